"""The order worker's batch path: a polled batch applied as one unit of work ends exactly where
applying its events one at a time ends: the same customers (compared by their identities and
fields, not their generated ids), orders, timeline and published events."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.profile.customers import service as customers
from vafa.profile.models import CustomerIdentity, Order, TimelineEntry
from vafa.profile.orders import service
from vafa.profile.orders.service import OrderEvent, PurchaseKind

from .factories import make_order, unique
from .test_orders import outbox_messages

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ORDERS = 4

# A small pool of buyers who share shop ids, emails and phones, so events of different buyers
# meet on the same files (and on identities that belong to someone else).
SHOP_IDS = ["", "", "s1", "s2"]
EMAILS = ["", "a@example.com", "A@Example.com ", "b@example.com"]
# Per run: "{n}" becomes six random digits (the same number in local and international form).
PHONES = ["", "0912{n}1", "+98912{n}1", "+98912{n}2", "not a phone"]
NAMES = [("", ""), ("Sara", ""), ("", "Ahmadi")]
COUNTRIES = ["", "IR", "am"]


@dataclass(frozen=True)
class Buyer:
    shop: int
    email: int
    phone: int
    name: int
    country: int


@dataclass(frozen=True)
class Step:
    kind: PurchaseKind
    order: int
    buyer: Buyer
    total: int
    refund: int


@dataclass(frozen=True)
class Redeliver:
    which: int  # an index into what was delivered so far (modulo its length)


def ix(pool: list[Any]) -> st.SearchStrategy[int]:
    return st.integers(0, len(pool) - 1)


buyers = st.builds(Buyer, ix(SHOP_IDS), ix(EMAILS), ix(PHONES), ix(NAMES), ix(COUNTRIES))
# Most orders keep their buyer; now and then an event says something else about the buyer.
order_buyers = st.lists(buyers, min_size=ORDERS, max_size=ORDERS)
steps = st.lists(
    st.one_of(
        st.builds(
            Step,
            st.sampled_from(list(PurchaseKind)),
            st.integers(0, ORDERS - 1),
            st.none() | buyers,  # None: the order's own buyer
            st.sampled_from([10_000, 25_000]),
            st.sampled_from([1_000, 30_000]),
        ),
        st.builds(Redeliver, st.integers(0, 1000)),
    ),
    min_size=1,
    max_size=25,
)


def events_of(
    stream: list[Step | Redeliver], own: list[Buyer], token: str
) -> tuple[list[OrderEvent], list[str]]:
    """The stream as shop order events (a redelivery repeats an earlier event, id and all)."""
    refs = [f"shopify:demo.myshopify.com:{token}-{i}" for i in range(ORDERS)]
    digits = str(uuid.uuid4().int)[:6]
    delivered: list[OrderEvent] = []
    for n, step in enumerate(stream):
        if isinstance(step, Redeliver):
            if delivered:
                delivered.append(delivered[step.which % len(delivered)])
            continue
        b = step.buyer or own[step.order]
        first, last = NAMES[b.name]
        order = make_order(
            ref=refs[step.order],
            shop_customer_id=f"{token}{SHOP_IDS[b.shop]}" if SHOP_IDS[b.shop] else "",
            email=f"{token}{EMAILS[b.email]}" if EMAILS[b.email] else "",
            phone=PHONES[b.phone].format(n=digits),
            first_name=first,
            last_name=last,
            country_code=COUNTRIES[b.country],
            city="",
            total_minor=step.total,
            currency="USD",
            number=f"#{step.order}",
        )
        if step.order % 2:
            order.placed_at.FromDatetime(T0 - timedelta(days=1))
        refund = None
        if step.kind == PurchaseKind.refunded:
            refund = shop_orders_pb2.Refund(
                refund_id=f"r{n}", amount=common_pb2.Money(amount_minor=step.refund, currency="USD")
            )
        delivered.append(
            OrderEvent(
                kind=step.kind,
                order=order,
                event_id=f"{token}-evt-{n}",
                occurred_at=T0 + timedelta(minutes=n),
                refund=refund,
                reason="customer" if step.kind == PurchaseKind.cancelled else "",
            )
        )
    return delivered, refs


async def state(session: AsyncSession, refs: list[str], event_ids: list[str]) -> dict[str, Any]:
    """Everything the events did, with customer ids replaced by their order of appearance on
    the timeline (every customer the events opened has the entry of the event that opened it)."""
    entries = (
        await session.scalars(
            select(TimelineEntry)
            .where(TimelineEntry.source_id.in_(event_ids))
            .order_by(TimelineEntry.id)
        )
    ).all()
    canon: dict[uuid.UUID, int] = {}
    for e in entries:
        canon.setdefault(e.customer_id, len(canon))

    def c(cid: uuid.UUID | str) -> int:
        return canon[uuid.UUID(str(cid))]

    timeline = []
    for e in entries:
        data = dict(e.data)
        if "identity_conflicts" in data:
            data["identity_conflicts"] = [
                {**x, "customer_id": c(x["customer_id"])} for x in data["identity_conflicts"]
            ]
        timeline.append((e.source_id, e.kind, c(e.customer_id), e.occurred_at, e.summary, data))

    orders = {
        o.order_ref: (
            c(o.customer_id),
            o.status,
            o.total_minor,
            o.currency,
            o.order_number,
            o.placed_at,
            o.refunded_minor,
        )
        for o in (await session.scalars(select(Order).where(Order.order_ref.in_(refs)))).all()
    }

    # Every identity of the run is unique to it, so held by a customer the run opened.
    ids = (
        await session.execute(
            select(CustomerIdentity.customer_id, CustomerIdentity.kind, CustomerIdentity.value)
            .where(CustomerIdentity.customer_id.in_(list(canon)))
            .order_by(CustomerIdentity.id)
        )
    ).all()
    people: dict[int, Any] = {}
    for cid in canon:
        row = (
            await session.execute(
                text(
                    "SELECT lifecycle_stage, first_name, last_name, country_code, city "
                    "FROM customers WHERE id = :id"
                ),
                {"id": cid},
            )
        ).one()
        people[c(cid)] = (
            tuple(row),
            sorted((k, v) for owner, k, v in ids if owner == cid),
        )

    # Published events, in outbox order; customer ids and the event ids derived from them
    # named canonically.
    derived: dict[str, tuple[str, ...]] = {}
    for cid, n in canon.items():
        derived[cloudevents.deterministic_id("profile", "registered", str(cid))] = (
            "registered",
            str(n),
        )
        for eid in event_ids:
            derived[cloudevents.deterministic_id("profile", "updated", str(cid), eid)] = (
                "updated",
                str(n),
                eid,
            )
    rows = (
        await session.execute(
            text(
                "SELECT event_id, key, headers, payload FROM outbox WHERE key = ANY(:k) ORDER BY id"
            ),
            {"k": [str(cid) for cid in canon]},
        )
    ).all()
    published = []
    for event_id, key, headers, payload in rows:
        env = cloudevents.decode([(k, v.encode()) for k, v in headers], payload)
        msg = env.message
        if isinstance(msg, profile_pb2.PurchaseAttributed):
            body: tuple[Any, ...] = (c(msg.customer_id), msg.kind, msg.source_event_id)
        elif isinstance(msg, profile_pb2.CustomerRegistered | profile_pb2.CustomerUpdated):
            snap = msg.customer
            body = (
                c(snap.customer_id),
                sorted(snap.emails),
                sorted(snap.phones),
                sorted(s.shop_customer_id for s in snap.shop_identities),
                snap.lifecycle_stage,
                snap.first_name,
                snap.last_name,
                snap.country_code,
                list(getattr(msg, "changed_fields", [])),
            )
        else:
            raise AssertionError(msg)
        published.append((derived.get(event_id, (event_id,)), env.type, c(key), body))

    return {"timeline": timeline, "orders": orders, "people": people, "published": published}


async def run(db: Database, events: list[OrderEvent], *, batch: bool) -> dict[str, Any]:
    refs = sorted({e.order.order_ref for e in events})
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
        try:
            if batch:
                await service.apply_order_events(session, events, default_region="IR")
            else:
                for e in events:
                    await service.apply_order_events(session, [e], default_region="IR")
            return await state(session, refs, sorted({e.event_id for e in events}))
        finally:
            await session.close()
            await outer.rollback()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=steps, own=order_buyers)
async def test_a_batch_ends_where_one_event_at_a_time_ends(
    db: Database, stream: list[Step | Redeliver], own: list[Buyer]
) -> None:
    events, _ = events_of(stream, own, unique("b"))
    if not events:
        return
    one_by_one = await run(db, events, batch=False)
    batched = await run(db, events, batch=True)
    assert batched == one_by_one
    # Every new event had its entry; redeliveries added nothing.
    assert len(batched["timeline"]) == len({e.event_id for e in events})


async def test_placed_then_paid_for_a_new_buyer_in_one_batch(session: AsyncSession) -> None:
    """The paid event sees the customer and the order the placed event opened in the same
    batch; a second order of the same new person joins the same file."""
    mail = f"{unique()}@example.com"
    order = make_order(email=mail, phone="09121110009")
    other = make_order(email=mail.upper(), number="#1002")
    events = [
        OrderEvent(PurchaseKind.placed, order, unique("e-"), T0),
        OrderEvent(PurchaseKind.paid, order, unique("e-"), T0 + timedelta(minutes=1)),
        OrderEvent(PurchaseKind.placed, other, unique("e-"), T0 + timedelta(minutes=2)),
    ]
    rows = await service.apply_order_events(session, [*events, events[1]], default_region="IR")
    assert rows[3] is None  # repeated in the batch
    assert rows[0] is rows[1] and rows[0] is not None and rows[0].status == "paid"
    assert rows[2] is not None and rows[2].customer_id == rows[0].customer_id
    cid = rows[0].customer_id
    assert {
        o.order_ref: o.status
        for o in (await session.scalars(select(Order).where(Order.customer_id == cid))).all()
    } == {
        order.order_ref: "paid",
        other.order_ref: "placed",
    }
    published = [
        m
        for m in await outbox_messages(session, str(cid))
        if isinstance(m, profile_pb2.CustomerRegistered | profile_pb2.CustomerUpdated)
    ]
    # Registered as a lead by the placed order, then a customer (kind) at the paid one.
    assert [type(m).__name__ for m in published] == ["CustomerRegistered", "CustomerUpdated"]
    assert published[0].customer.kind == "lead" and published[1].customer.kind == "customer"
    assert list(published[1].changed_fields) == ["kind"]
    # Applied again (a redelivery past the inbox): nothing more.
    assert await service.apply_order_events(session, events, default_region="IR") == [None] * 3
    assert set(await customers.identities_of(session, cid)) == {
        customers.Identity(customers.IdentityKind.email, mail),
        customers.Identity(customers.IdentityKind.phone, "+989121110009"),
    }

"""Attributing shop order events: purchase history, timeline, and the events published."""

from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.profile.customers import service as customers
from vafa.profile.models import Order, TimelineEntry
from vafa.profile.orders import service
from vafa.profile.orders.service import PurchaseKind

from .factories import make_order, unique

NOW = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)


async def record(
    session: AsyncSession,
    kind: PurchaseKind,
    order: shop_orders_pb2.Order,
    event_id: str | None = None,
    **kw: object,
) -> Order | None:
    return await service.record_order_event(
        session,
        kind=kind,
        order=order,
        event_id=event_id or unique("evt-"),
        occurred_at=kw.pop("occurred_at", NOW),  # type: ignore[arg-type]
        default_region="IR",
        **kw,  # type: ignore[arg-type]
    )


async def outbox_messages(session: AsyncSession, key: str) -> list[Message]:
    rows = (
        await session.execute(
            text("SELECT headers, payload FROM outbox WHERE key = :k ORDER BY id"), {"k": key}
        )
    ).all()
    return [cloudevents.decode([(k, v.encode()) for k, v in h], p).message for h, p in rows]


async def test_paid_order_from_a_new_buyer(session: AsyncSession) -> None:
    order = make_order(
        shop_customer_id="7001", email=" Sara@Example.com ", phone="۰۹۱۲۱۲۳۰۰۰۱", number="#1001"
    )
    row = await record(session, PurchaseKind.paid, order, event_id="evt-paid-7001")
    assert row is not None
    assert (row.status, row.total_minor, row.currency, row.order_number) == (
        "paid",
        1_250_000,
        "IRR",
        "#1001",
    )
    customer = await customers.get_customer(session, row.customer_id)
    assert customer is not None and customer.lifecycle_stage == "customer"
    ids = {i.value for i in await customers.identities_of(session, customer.id)}
    assert ids == {"shopify:demo.myshopify.com:7001", "sara@example.com", "+989121230001"}

    entry = await session.scalar(
        select(TimelineEntry).where(TimelineEntry.source_id == "evt-paid-7001")
    )
    assert entry is not None
    assert (entry.kind, entry.customer_id, entry.source) == ("order.paid", customer.id, "shop")
    assert entry.summary == "Order #1001 paid: 1250000 IRR."
    assert entry.data["order_ref"] == order.order_ref and entry.data["items"] == 2

    messages = await outbox_messages(session, str(customer.id))
    assert [type(m) for m in messages] == [
        profile_pb2.CustomerRegistered,
        profile_pb2.PurchaseAttributed,
    ]
    purchase = messages[1]
    assert isinstance(purchase, profile_pb2.PurchaseAttributed)
    assert purchase.customer_id == str(customer.id)
    assert purchase.kind == profile_pb2.PURCHASE_KIND_PAID
    assert purchase.source_event_id == "evt-paid-7001"
    assert purchase.order == order


async def test_same_event_twice_has_one_effect(session: AsyncSession) -> None:
    order = make_order(email=f"{unique()}@example.com")
    assert await record(session, PurchaseKind.paid, order, event_id="evt-twice") is not None
    assert await record(session, PurchaseKind.paid, order, event_id="evt-twice") is None
    assert (
        await session.scalar(
            select(func.count())
            .select_from(TimelineEntry)
            .where(TimelineEntry.source_id == "evt-twice")
        )
        == 1
    )
    purchases = (
        await session.execute(
            text("SELECT count(*) FROM outbox WHERE topic = 'profile.purchases.v1' AND key = :k"),
            {"k": str((await session.get(Order, order.order_ref)).customer_id)},  # type: ignore[union-attr]
        )
    ).scalar_one()
    assert purchases == 1


async def test_order_lifecycle_status_only_moves_forward(session: AsyncSession) -> None:
    placed_at = NOW - timedelta(hours=2)
    order = make_order(email=f"{unique()}@example.com", total_minor=40495, currency="USD")
    order.placed_at.FromDatetime(placed_at)
    await record(session, PurchaseKind.paid, order)
    row = await record(session, PurchaseKind.placed, order)  # arrives late
    assert row is not None and row.status == "paid" and row.placed_at == placed_at
    refund = shop_orders_pb2.Refund(
        refund_id="r1", amount=common_pb2.Money(amount_minor=10000, currency="USD")
    )
    row = await record(session, PurchaseKind.refunded, order, refund=refund)
    assert row is not None and row.status == "refunded" and row.refunded_minor == 10000
    entries = (
        await session.scalars(
            select(TimelineEntry)
            .where(TimelineEntry.customer_id == row.customer_id)
            .order_by(TimelineEntry.id)
        )
    ).all()
    assert [e.kind for e in entries] == ["order.paid", "order.placed", "order.refunded"]
    # The placed entry sits at the order's placing time, not the event's.
    assert entries[1].occurred_at == placed_at
    assert entries[2].summary == "Order #1001 refunded: 100.00 USD of 404.95 USD."
    assert entries[2].data["refund"] == {"refund_id": "r1", "amount_minor": 10000}
    kinds = [
        m.kind
        for m in await outbox_messages(session, str(row.customer_id))
        if isinstance(m, profile_pb2.PurchaseAttributed)
    ]
    assert kinds == [
        profile_pb2.PURCHASE_KIND_PAID,
        profile_pb2.PURCHASE_KIND_PLACED,
        profile_pb2.PURCHASE_KIND_REFUNDED,
    ]


async def test_an_order_stays_with_its_first_customer(session: AsyncSession) -> None:
    """The paid event of a guest order carries a shop account that belongs to someone else:
    the order (and its PurchaseAttributed) stays with the buyer it was placed by."""
    other = make_order(shop_customer_id="8001")
    other_row = await record(session, PurchaseKind.paid, other)
    order = make_order(email=f"{unique()}@example.com")
    placed = await record(session, PurchaseKind.placed, order)
    assert placed is not None and placed.customer_id != other_row.customer_id  # type: ignore[union-attr]
    order.customer.shop_customer_id = "8001"
    paid = await record(session, PurchaseKind.paid, order, event_id="evt-stays")
    assert paid is not None and paid.customer_id == placed.customer_id
    entry = await session.scalar(
        select(TimelineEntry).where(TimelineEntry.source_id == "evt-stays")
    )
    assert entry is not None
    assert entry.data["identity_conflicts"] == [
        {"kind": "shop", "customer_id": str(other_row.customer_id)}  # type: ignore[union-attr]
    ]


async def test_an_invalid_phone_is_kept_on_the_timeline_not_as_identity(
    session: AsyncSession,
) -> None:
    order = make_order(email=f"{unique()}@example.com", phone="call me maybe")
    row = await record(session, PurchaseKind.placed, order, event_id="evt-bad-phone")
    assert row is not None
    kinds = {i.kind for i in await customers.identities_of(session, row.customer_id)}
    assert kinds == {"email"}
    entry = await session.scalar(
        select(TimelineEntry).where(TimelineEntry.source_id == "evt-bad-phone")
    )
    assert entry is not None
    assert entry.data["buyer"]["phone"] == "call me maybe"
    assert "phone" in entry.data["rejected_identities"]


async def test_billing_country_reads_local_phone_numbers(session: AsyncSession) -> None:
    order = make_order(phone="091 12 34 56", country_code="AM", currency="AMD")
    row = await record(session, PurchaseKind.placed, order)
    assert row is not None
    phones = [i.value for i in await customers.identities_of(session, row.customer_id)]
    assert phones == ["+37491123456"]


async def test_cancelled_order_counts_nothing_and_known_buyer_is_updated(
    session: AsyncSession,
) -> None:
    mail = f"{unique()}@example.com"
    first = await record(session, PurchaseKind.paid, make_order(email=mail, total_minor=500))
    second_order = make_order(email=mail, phone="+989121230002", total_minor=700)
    await record(session, PurchaseKind.placed, second_order)
    row = await record(session, PurchaseKind.cancelled, second_order, reason="customer")
    assert row is not None and row.status == "cancelled"
    assert row.customer_id == first.customer_id  # type: ignore[union-attr]
    customer = await customers.get_customer(session, row.customer_id)
    assert customer is not None
    file = await customers.read_file(session, customer=customer)
    assert file.order_count == 1
    assert [(s.currency, s.amount_minor) for s in file.total_spend] == [("IRR", 500)]
    assert file.identities.phones == ["+989121230002"]
    assert [e.kind for e in file.timeline] == ["order.cancelled", "order.placed", "order.paid"]
    updated = [
        m
        for m in await outbox_messages(session, str(row.customer_id))
        if isinstance(m, profile_pb2.CustomerUpdated)
    ]
    assert len(updated) == 1 and list(updated[0].changed_fields) == ["phones"]

"""The worker against the real broker: a purchase earns once however often it is delivered, and
the PointsEarned event reaches loyalty.events.v1 through the outbox."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from google.protobuf.message import Message
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, loyalty_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.loyalty.models import Account, LedgerEntry
from vafa.loyalty.points import rules, store
from vafa.loyalty.spec import SPEC


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_purchase_earns_once_and_publishes_points_earned(
    settings: ServiceSettings, db: Database, worker: asyncio.Event
) -> None:
    customer = str(uuid.uuid4())
    registered_only = str(uuid.uuid4())
    order_ref = f"shopify:w:{uuid.uuid4().hex[:8]}"
    paid = profile_pb2.PurchaseAttributed(
        customer_id=customer,
        kind=profile_pb2.PURCHASE_KIND_PAID,
        order=shop_orders_pb2.Order(
            order_ref=order_ref,
            currency="USD",
            total=common_pb2.Money(amount_minor=40495, currency="USD"),
        ),
        source_event_id="shop-evt-1",
    )
    paid_id = f"evt-paid-{order_ref}"
    registered_id = f"evt-reg-{registered_only}"
    producer = make_producer(settings.kafka, client_id="loyalty-test")
    await producer.start()
    try:
        headers, value = cloudevents.encode(
            paid, source="/vafa/profile", subject=customer, event_id=paid_id
        )
        for _ in range(2):  # the same event delivered twice
            await producer.send_and_wait(
                settings.kafka.topic("profile.purchases.v1"),
                value=value,
                key=customer.encode(),
                headers=headers,
            )
        reg_headers, reg_value = cloudevents.encode(
            profile_pb2.CustomerRegistered(
                customer=profile_pb2.CustomerSnapshot(customer_id=registered_only),
                source="club_signup",
            ),
            source="/vafa/profile",
            event_id=registered_id,
        )
        await producer.send_and_wait(
            settings.kafka.topic("profile.customers.v1"),
            value=reg_value,
            key=registered_only.encode(),
            headers=reg_headers,
        )
    finally:
        await producer.stop()

    async def consumed() -> bool:
        async with db.sessionmaker() as s:
            n = (
                await s.execute(
                    # The ledger's consumers only (tiers, rewards, referrals claim these too).
                    text(
                        "SELECT count(*) FROM inbox WHERE event_id IN (:a, :b) "
                        "AND consumer IN ('loyalty.purchases', 'loyalty.customers')"
                    ),
                    {"a": paid_id, "b": registered_id},
                )
            ).scalar_one()
            return n == 2

    await wait_for(consumed)

    # Read what the relay published to loyalty.events.v1 (test prefix), from the beginning.
    consumer = AIOKafkaConsumer(
        settings.kafka.topic("loyalty.events.v1"),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    earned: list[cloudevents.Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    env = cloudevents.decode(r.headers, r.value)
                    if env.subject == customer:
                        assert r.key == customer.encode()
                        earned.append(env)
            if earned:
                await asyncio.sleep(1.0)  # a duplicate would arrive right behind
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        env = cloudevents.decode(r.headers, r.value)
                        if env.subject == customer:
                            earned.append(env)
                break
    finally:
        await consumer.stop()

    assert len(earned) == 1, earned
    msg = earned[0].message
    assert isinstance(msg, loyalty_pb2.PointsEarned)
    assert (msg.customer_id, msg.points, msg.balance, msg.reason, msg.order_ref) == (
        customer,
        404,
        404,
        "order",
        order_ref,
    )
    assert earned[0].source == "/vafa/loyalty"

    async with db.sessionmaker() as s:
        entries = (
            await s.scalars(
                select(LedgerEntry).where(LedgerEntry.customer_id == uuid.UUID(customer))
            )
        ).all()
        assert [(e.kind, e.delta, e.idempotency_key) for e in entries] == [
            ("earn", 404, f"earn:order:{order_ref}")
        ]
        account = await s.get(Account, uuid.UUID(customer))
        assert account is not None and account.balance == 404
        registered = await s.get(Account, uuid.UUID(registered_only))
        assert registered is not None and registered.balance == 0


async def _produce(
    settings: ServiceSettings, topic: str, events: list[tuple[str, str, Message, str]]
) -> None:
    """(event id, key, message, traceparent) in this order, to one partition per key."""
    producer = make_producer(settings.kafka, client_id="loyalty-test")
    await producer.start()
    try:
        for event_id, key, message, traceparent in events:
            headers, value = cloudevents.encode(
                message,
                source="/vafa/profile",
                subject=key,
                event_id=event_id,
                traceparent=traceparent,
            )
            await producer.send_and_wait(
                settings.kafka.topic(topic), value=value, key=key.encode(), headers=headers
            )
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running_worker(settings: ServiceSettings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(SPEC.worker(settings, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _order(ref: str, total_minor: int) -> shop_orders_pb2.Order:
    return shop_orders_pb2.Order(
        order_ref=ref,
        currency="USD",
        total=common_pb2.Money(amount_minor=total_minor, currency="USD"),
    )


def _purchase(
    customer: str, kind: int, order: shop_orders_pb2.Order, refund_minor: int = 0
) -> profile_pb2.PurchaseAttributed:
    msg = profile_pb2.PurchaseAttributed(customer_id=customer, kind=kind, order=order)  # type: ignore[arg-type]
    if kind == profile_pb2.PURCHASE_KIND_REFUNDED:
        msg.refund.refund_id = "r1"
        msg.refund.amount.amount_minor = refund_minor
        msg.refund.amount.currency = "USD"
    return msg


async def _outbox_events(db: Database, customer: str) -> list[cloudevents.Envelope]:
    async with db.sessionmaker() as s:
        rows = await s.execute(
            text("SELECT headers, payload FROM outbox WHERE key = :k ORDER BY id"), {"k": customer}
        )
        return [
            cloudevents.decode([(k, v.encode()) for k, v in r.headers], r.payload)
            for r in rows.all()
        ]


async def test_one_batch_with_earn_refund_cancel_and_duplicates_is_applied_in_order(
    settings: ServiceSettings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything is in the log before the worker starts, so its first poll holds the whole
    story of one order: paid, refunded, the same refund event redelivered, cancelled, and the
    payment again under a new event id. Applied in log order, the refund takes its share of what
    was earned, the cancellation the rest, and the copies nothing: balance 0. Any other order
    would leave points (a cancellation before the earn takes nothing)."""
    batches: list[list[rules.Purchase]] = []
    apply_purchases = store.apply_purchases

    async def spy(
        session: AsyncSession, purchases: Sequence[rules.Purchase], *args: Any, **kwargs: Any
    ) -> list[store.Entry | None]:
        batches.append(list(purchases))
        return await apply_purchases(session, purchases, *args, **kwargs)

    monkeypatch.setattr(store, "apply_purchases", spy)

    customer = str(uuid.uuid4())
    ref = f"shopify:batch:{uuid.uuid4().hex[:8]}"
    o = _order(ref, 40_495)  # 404 points
    paid = _purchase(customer, profile_pb2.PURCHASE_KIND_PAID, o)
    refund = _purchase(customer, profile_pb2.PURCHASE_KIND_REFUNDED, o, refund_minor=10_000)
    cancel = _purchase(customer, profile_pb2.PURCHASE_KIND_CANCELLED, o)
    trace = [f"00-{uuid.uuid4().hex}-{i + 1:016x}-01" for i in range(5)]
    ids = [f"evt-{ref}-{i}" for i in range(5)]
    await _produce(
        settings,
        "profile.purchases.v1",
        [
            (ids[0], customer, paid, trace[0]),
            (ids[1], customer, refund, trace[1]),
            (ids[1], customer, refund, trace[1]),  # redelivered: the inbox drops it
            (ids[3], customer, cancel, trace[3]),
            (ids[4], customer, paid, trace[4]),  # a copy under a new id: its key is used
        ],
    )

    async def consumed() -> bool:
        async with db.sessionmaker() as s:
            n = (
                await s.execute(
                    text(
                        "SELECT count(*) FROM inbox WHERE event_id = ANY(:ids) "
                        "AND consumer = 'loyalty.purchases'"
                    ),
                    {"ids": ids},
                )
            ).scalar_one()
            return n == 4

    async with running_worker(settings):
        await wait_for(consumed)

    ours = [[p for p in batch if str(p.customer_id) == customer] for batch in batches]
    assert [[p.action for p in b] for b in ours if b] == [
        [rules.Action.EARN, rules.Action.REFUND, rules.Action.CANCEL, rules.Action.EARN]
    ], "the four events did not arrive as one batch, in log order"

    async with db.sessionmaker() as s:
        entries = (
            await s.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.customer_id == uuid.UUID(customer))
                .order_by(LedgerEntry.id)
            )
        ).all()
        assert [(e.kind, e.delta, e.idempotency_key) for e in entries] == [
            ("earn", 404, f"earn:order:{ref}"),
            ("reverse", -99, f"reverse:refund:{ref}:r1"),  # floor(404 × 10000 / 40495)
            ("reverse", -305, f"reverse:cancel:{ref}"),
        ]
        account = await s.get(Account, uuid.UUID(customer))
        assert account is not None and account.balance == 0

    events = await _outbox_events(db, customer)
    summary = []
    for env in events:
        msg = env.message
        assert isinstance(msg, loyalty_pb2.PointsEarned | loyalty_pb2.PointsReversed)
        summary.append((type(msg).__name__, msg.points, msg.balance, env.traceparent))
    assert summary == [
        ("PointsEarned", 404, 404, trace[0]),
        ("PointsReversed", 99, 305, trace[1]),
        ("PointsReversed", 305, 0, trace[3]),
    ]


async def test_a_broken_event_in_a_batch_is_dead_lettered_and_the_rest_applied(
    settings: ServiceSettings, db: Database
) -> None:
    customer = str(uuid.uuid4())
    ref = f"shopify:broken:{uuid.uuid4().hex[:8]}"
    o = _order(ref, 10_000)  # 100 points
    broken = _purchase("not-a-uuid", profile_pb2.PURCHASE_KIND_PAID, o)
    ids = [f"evt-{ref}-{i}" for i in range(3)]
    await _produce(
        settings,
        "profile.purchases.v1",
        [
            (ids[0], customer, _purchase(customer, profile_pb2.PURCHASE_KIND_PAID, o), ""),
            (ids[1], customer, broken, ""),
            (ids[2], customer, _purchase(customer, profile_pb2.PURCHASE_KIND_CANCELLED, o), ""),
        ],
    )
    dlq = AIOKafkaConsumer(
        settings.kafka.topic("profile.purchases.v1") + ".dlq",
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await dlq.start()
    try:
        async with running_worker(settings):
            headers: dict[str, bytes] = {}
            deadline = asyncio.get_running_loop().time() + 60
            while not headers and asyncio.get_running_loop().time() < deadline:
                for records in (await dlq.getmany(timeout_ms=500)).values():
                    for r in records:
                        h = dict(r.headers)
                        # Every consumer group of the topic dead-letters it on its own.
                        if (h.get("ce_id"), h.get("dlq_consumer")) == (
                            ids[1].encode(),
                            b"loyalty.purchases",
                        ):
                            headers = h
    finally:
        await dlq.stop()
    assert headers, "the broken event never reached the DLQ"
    assert headers["dlq_consumer"] == b"loyalty.purchases"
    assert b"badly formed hexadecimal UUID string" in headers["dlq_error"]

    async with db.sessionmaker() as s:
        entries = (
            await s.execute(
                select(LedgerEntry.kind, LedgerEntry.delta)
                .where(LedgerEntry.customer_id == uuid.UUID(customer))
                .order_by(LedgerEntry.id)
            )
        ).all()
        assert [tuple(e) for e in entries] == [("earn", 100), ("reverse", -100)]
        account = await s.get(Account, uuid.UUID(customer))
        assert account is not None and account.balance == 0

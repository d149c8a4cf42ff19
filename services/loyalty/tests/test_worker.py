"""The worker against the real broker: a purchase earns once however often it is delivered, and
the PointsEarned event reaches loyalty.events.v1 through the outbox."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer
from sqlalchemy import select, text

from vafa.events.v1 import common_pb2, loyalty_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.loyalty.models import Account, LedgerEntry


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
                    text("SELECT count(*) FROM inbox WHERE event_id IN (:a, :b)"),
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

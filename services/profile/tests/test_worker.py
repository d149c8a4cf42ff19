"""The worker against the real broker: a shop order event becomes a customer, an order, a
timeline entry and one PurchaseAttributed, however often it is delivered; loyalty events land
on the timeline."""

import asyncio
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jdatetime
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select, text

from vafa.events.v1 import loyalty_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.cloudevents import Envelope
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.poll import eventually
from vafa.profile.config import Settings
from vafa.profile.customers import service as customers
from vafa.profile.customers.identities import Identity, IdentityKind
from vafa.profile.models import Customer, EffectiveDate, Order, TimelineEntry
from vafa.profile.spec import SPEC

from .factories import make_order, unique


async def produce(
    settings: ServiceSettings, topic: str, *records: tuple[Any, bytes, bytes]
) -> None:
    producer: AIOKafkaProducer = make_producer(settings.kafka, client_id="test")
    await producer.start()
    try:
        for (headers, value), key in ((r[:2], r[2]) for r in records):
            await producer.send_and_wait(
                settings.kafka.topic(topic), value=value, key=key, headers=headers
            )
    finally:
        await producer.stop()


async def consume_all(
    settings: ServiceSettings, topic: str, *, idle: float = 3.0
) -> list[Envelope]:
    """Every record on the topic from the beginning, until it stays quiet for `idle` seconds."""
    consumer = AIOKafkaConsumer(
        settings.kafka.topic(topic),
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4().hex}",
        enable_auto_commit=False,
    )
    await consumer.start()
    out = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle * 1000))
            records = [r for rs in batch.values() for r in rs]
            if not records:
                return out
            out += [cloudevents.decode(r.headers, r.value) for r in records]
    finally:
        await consumer.stop()


async def test_order_paid_end_to_end_once(
    settings: ServiceSettings, db: Database, worker: asyncio.Event
) -> None:
    mail = f"{unique()}@example.com"
    order = make_order(shop_customer_id=unique(), email=mail, phone="۰۹۱۲۷۷۷۰۰۰۱")
    event_id = unique("evt-paid-")
    paid = cloudevents.encode(
        shop_orders_pb2.OrderPaid(order=order),
        source="/vafa/gateway",
        subject=order.order_ref,
        event_id=event_id,
    )
    # A late OrderPlaced after the duplicate, on the same key (so the same partition): once it is
    # applied, the duplicate before it has certainly been handled too.
    sentinel_id = unique("evt-placed-")
    sentinel = cloudevents.encode(
        shop_orders_pb2.OrderPlaced(order=order), source="/vafa/gateway", event_id=sentinel_id
    )
    key = order.order_ref.encode()
    await produce(
        settings, "shop.orders.v1", (*paid, key), (*paid, key), (*sentinel, key)
    )  # the paid event delivered twice

    async def applied() -> Order | None:
        async with db.sessionmaker() as s:
            if not await s.scalar(
                select(func.count())
                .select_from(TimelineEntry)
                .where(TimelineEntry.source_id == sentinel_id)
            ):
                return None
            return await s.get(Order, order.order_ref)

    row = await eventually(applied)
    assert row.status == "paid" and row.total_minor == 1_250_000

    async with db.sessionmaker() as s:
        customer = await customers.find_by_identity(s, identity=Identity(IdentityKind.email, mail))
        assert customer is not None and customer.id == row.customer_id
        assert customer.lifecycle_stage == "customer"
        phones = [
            i.value
            for i in await customers.identities_of(s, customer.id)
            if i.kind == IdentityKind.phone
        ]
        assert phones == ["+989127770001"]

    # Published: one PurchaseAttributed and one CustomerRegistered, keyed by the customer.
    async def relayed() -> bool:
        async with db.sessionmaker() as s:
            return (
                await s.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
            ).scalar_one() == 0

    await eventually(relayed)
    published = [
        e
        for e in await consume_all(settings, "profile.purchases.v1")
        if isinstance(e.message, profile_pb2.PurchaseAttributed)
        and e.message.order.order_ref == order.order_ref
    ]
    assert sorted(e.message.source_event_id for e in published) == sorted([event_id, sentinel_id])  # type: ignore[attr-defined]
    purchases = [e for e in published if e.message.source_event_id == event_id]  # type: ignore[attr-defined]
    assert len(purchases) == 1
    msg = purchases[0].message
    assert isinstance(msg, profile_pb2.PurchaseAttributed)
    assert msg.customer_id == str(customer.id)
    assert msg.kind == profile_pb2.PURCHASE_KIND_PAID
    assert msg.order.order_ref == order.order_ref and msg.order.total.amount_minor == 1_250_000
    assert purchases[0].subject == str(customer.id) and purchases[0].source == "/vafa/profile"

    registered = [
        e
        for e in await consume_all(settings, "profile.customers.v1", idle=1.0)
        if isinstance(e.message, profile_pb2.CustomerRegistered)
        and e.message.customer.customer_id == str(customer.id)
    ]
    assert len(registered) == 1

    # The duplicate delivery had no second effect: one paid entry, then the placed one.
    async with db.sessionmaker() as s:
        kinds = (
            await s.scalars(
                select(TimelineEntry.kind)
                .where(TimelineEntry.customer_id == customer.id)
                .order_by(TimelineEntry.id)
            )
        ).all()
        assert kinds == ["order.paid", "order.placed"]
        entry = await s.scalar(select(TimelineEntry).where(TimelineEntry.source_id == event_id))
        assert entry is not None and entry.kind == "order.paid"
        assert (await s.get(Order, order.order_ref)).status == "paid"  # type: ignore[union-attr]
        inbox = (
            await s.execute(
                text(
                    "SELECT count(*) FROM inbox WHERE consumer = 'profile.orders' AND event_id = :e"
                ),
                {"e": event_id},
            )
        ).scalar_one()
        assert inbox == 1


async def test_the_same_new_person_in_two_partitions_is_one_customer(
    settings: ServiceSettings, db: Database, worker: asyncio.Event
) -> None:
    """Two orders of one new buyer (different keys, so likely different partitions) both
    resolve to one customer, whatever the interleaving."""
    mail = f"{unique()}@example.com"
    first, second = make_order(email=mail), make_order(email=mail.upper(), number="#1002")
    records = []
    for o in (first, second):
        ev = cloudevents.encode(
            shop_orders_pb2.OrderPlaced(order=o), source="/t", event_id=unique()
        )
        records.append((*ev, o.order_ref.encode()))
    await produce(settings, "shop.orders.v1", *records)

    async def both() -> list[Order] | None:
        async with db.sessionmaker() as s:
            rows = (
                await s.scalars(
                    select(Order).where(Order.order_ref.in_([first.order_ref, second.order_ref]))
                )
            ).all()
            return list(rows) if len(rows) == 2 else None

    rows = await eventually(both)
    assert rows[0].customer_id == rows[1].customer_id


async def test_points_events_on_the_timeline(
    settings: ServiceSettings, db: Database, worker: asyncio.Event
) -> None:
    async with db.sessionmaker() as s, s.begin():
        r = await customers.resolve_customer(
            s,
            identities=[Identity(IdentityKind.email, f"{unique()}@example.com")],
            details=customers.Details(),
        )
        cid = str(r.customer.id)
    earned_id, reversed_id, stranger_id = unique("pe-"), unique("pr-"), unique("px-")
    earned = cloudevents.encode(
        loyalty_pb2.PointsEarned(customer_id=cid, points=40, balance=40, reason="order"),
        source="/vafa/loyalty",
        event_id=earned_id,
    )
    reversed_ = cloudevents.encode(
        loyalty_pb2.PointsReversed(customer_id=cid, points=10, balance=30, reason="order_refunded"),
        source="/vafa/loyalty",
        event_id=reversed_id,
    )
    stranger = cloudevents.encode(
        loyalty_pb2.PointsEarned(customer_id=str(uuid.uuid4()), points=1, balance=1),
        source="/vafa/loyalty",
        event_id=stranger_id,
    )
    last_id = unique("pl-")
    last = cloudevents.encode(
        loyalty_pb2.PointsEarned(customer_id=cid, points=5, balance=35, reason="birthday"),
        source="/vafa/loyalty",
        event_id=last_id,
    )
    key = cid.encode()
    await produce(
        settings,
        "loyalty.events.v1",
        (*stranger, b"x"),
        (*earned, key),
        (*reversed_, key),
        (*earned, key),  # redelivered
        (*last, key),
    )

    async def entries() -> list[str] | None:
        async with db.sessionmaker() as s:
            kinds = (
                await s.scalars(
                    select(TimelineEntry.kind)
                    .where(TimelineEntry.customer_id == uuid.UUID(cid))
                    .order_by(TimelineEntry.id)
                )
            ).all()
            return list(kinds) if len(kinds) >= 3 else None

    # The redelivery sits between the reversal and the last event: it added nothing.
    assert await eventually(entries) == ["points.earned", "points.reversed", "points.earned"]

    async def handled() -> bool:
        async with db.sessionmaker() as s:
            n = (
                await s.execute(
                    text(
                        "SELECT count(*) FROM inbox WHERE consumer = 'profile.loyalty' AND event_id = :e"
                    ),
                    {"e": stranger_id},
                )
            ).scalar_one()
            return n == 1

    await eventually(handled)  # the stranger's event was consumed, quietly, with no entry
    async with db.sessionmaker() as s:
        assert (
            await s.scalar(
                select(func.count())
                .select_from(TimelineEntry)
                .where(TimelineEntry.source_id == stranger_id)
            )
            == 0
        )
        assert (
            await s.scalar(
                select(func.count())
                .select_from(TimelineEntry)
                .where(TimelineEntry.source_id.in_([earned_id, reversed_id, last_id]))
            )
            == 3
        )


async def test_the_kit_consumer_retries_a_lost_race_onto_the_winner(
    settings: ServiceSettings, db: Database, monkeypatch: Any
) -> None:
    """Two consumers (two partitions, two processes in production) handle two orders of the
    same new buyer at the same moment. A barrier makes both look the buyer up before either
    creates the file, so the race is certain: one transaction loses on the unique identity,
    the kit consumer replays it, and the replay attributes the order to the winner's file."""
    from aiokafka.structs import ConsumerRecord

    from vafa.kit.consumer import Consumer
    from vafa.profile.config import Settings
    from vafa.profile.orders.handlers import ORDER_TYPES, order_batch_handler

    assert isinstance(settings, Settings)
    barrier = asyncio.Barrier(2)
    real_owners = customers.owners
    first_lookups = 0
    races = 0

    async def owners_in_lockstep(session, identities):  # type: ignore[no-untyped-def]
        nonlocal first_lookups
        found = await real_owners(session, identities)
        if first_lookups < 2:
            first_lookups += 1
            await asyncio.wait_for(barrier.wait(), 10)
        return found

    real_handler = order_batch_handler(settings)

    async def counting_handler(session, envelopes):  # type: ignore[no-untyped-def]
        nonlocal races
        try:
            return await real_handler(session, envelopes)
        except customers.IdentityRace:
            races += 1
            raise

    monkeypatch.setattr(customers, "owners", owners_in_lockstep)

    mail = f"{unique()}@example.com"
    orders = [make_order(email=mail), make_order(email=mail, number="#1002")]
    producer = make_producer(settings.kafka, client_id="test-race")
    await producer.start()
    try:
        consumers = [
            Consumer(
                name="profile.orders",
                topics=["shop.orders.v1"],
                batch_handler=counting_handler,
                batch_types=ORDER_TYPES,
                db=db,
                kafka=settings.kafka,
                producer=producer,
                backoff_base=0.05,
            )
            for _ in orders
        ]
        records = []
        for partition, o in enumerate(orders):
            headers, value = cloudevents.encode(
                shop_orders_pb2.OrderPaid(order=o), source="/t", event_id=unique("race-")
            )
            records.append(
                ConsumerRecord(
                    topic="shop.orders.v1",
                    partition=partition,
                    offset=0,
                    timestamp=0,
                    timestamp_type=0,
                    key=o.order_ref.encode(),
                    value=value,
                    checksum=None,
                    serialized_key_size=0,
                    serialized_value_size=len(value),
                    headers=headers,
                )
            )
        try:
            await asyncio.gather(*(c.process([r]) for c, r in zip(consumers, records, strict=True)))
        finally:
            for c in consumers:
                await c.consumer.stop()  # never started: this only releases the client
    finally:
        await producer.stop()

    assert races == 1, "exactly one transaction should have lost the race"
    async with db.sessionmaker() as s:
        rows = (
            await s.scalars(select(Order).where(Order.order_ref.in_([o.order_ref for o in orders])))
        ).all()
        assert len(rows) == 2 and rows[0].customer_id == rows[1].customer_id
        holders = await customers.owners(s, [Identity(IdentityKind.email, mail)])
        assert set(holders.values()) == {rows[0].customer_id}
        registered = (
            await s.execute(
                text(
                    "SELECT count(*) FROM outbox WHERE key = :k AND topic = 'profile.customers.v1'"
                ),
                {"k": str(rows[0].customer_id)},
            )
        ).scalar_one()
        assert registered == 1


async def test_order_fulfilled_is_republished(
    settings: ServiceSettings, db: Database, worker: asyncio.Event
) -> None:
    order = make_order(email=f"{unique()}@example.com")
    event_id = unique("evt-fulfilled-")
    headers, value = cloudevents.encode(
        shop_orders_pb2.OrderFulfilled(order=order), source="/vafa/gateway", event_id=event_id
    )
    await produce(settings, "shop.orders.v1", (headers, value, order.order_ref.encode()))

    async def published() -> list[Envelope]:
        return [
            e
            for e in await consume_all(settings, "profile.purchases.v1", idle=1.0)
            if isinstance(e.message, profile_pb2.PurchaseAttributed)
            and e.message.source_event_id == event_id
        ]

    got = await eventually(published, within=40, what="PurchaseAttributed FULFILLED")
    msg = got[0].message
    assert isinstance(msg, profile_pb2.PurchaseAttributed)
    assert msg.kind == profile_pb2.PURCHASE_KIND_FULFILLED and len(got) == 1
    async with db.sessionmaker() as s:
        kinds = (
            await s.scalars(select(TimelineEntry.kind).where(TimelineEntry.source_id == event_id))
        ).all()
    assert kinds == ["order.fulfilled"]


async def test_the_worker_announces_upcoming_dates(settings: ServiceSettings, db: Database) -> None:
    assert isinstance(settings, Settings)
    fast = settings.model_copy(update={"effective_date_scan_seconds": 0.3})
    today = datetime.now(ZoneInfo(fast.timezone)).date()
    j = jdatetime.date.fromgregorian(date=today)
    async with db.sessionmaker() as s, s.begin():
        customer = Customer(first_name="Nowruz", lifecycle_stage="lead")
        s.add(customer)
        await s.flush()
        date_row = EffectiveDate(
            customer_id=customer.id, kind="birthday", calendar="jalali", month=j.month, day=j.day
        )
        s.add(date_row)
        await s.flush()
        date_id = str(date_row.id)

    stop = asyncio.Event()
    task = asyncio.create_task(SPEC.worker(fast, stop))
    try:

        async def announced() -> list[Envelope]:
            return [
                e
                for e in await consume_all(fast, "profile.customers.v1", idle=1.0)
                if isinstance(e.message, profile_pb2.EffectiveDateUpcoming)
                and e.message.date.date_id == date_id
            ]

        got = await eventually(announced, within=40, what="EffectiveDateUpcoming")
        # Several runs of the job went by: still one announcement for this occurrence.
        await asyncio.sleep(1.0)
        assert len(await announced()) == 1
        msg = got[0].message
        assert isinstance(msg, profile_pb2.EffectiveDateUpcoming)
        assert (msg.occurs_on, msg.days_ahead) == (today.isoformat(), 0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

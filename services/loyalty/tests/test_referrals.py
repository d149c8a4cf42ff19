"""Referrals on the real database (and broker): both sides earn once, whatever is replayed or
in which order the registration and the first payment arrive; self-referral and caps."""

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
from google.protobuf.message import Message
from sqlalchemy import text

from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.cloudevents import Envelope
from vafa.kit.db import Database
from vafa.kit.kafka import make_producer
from vafa.kit.settings import ServiceSettings
from vafa.kit.testing.plugin import principal_headers
from vafa.kit.testing.poll import eventually
from vafa.loyalty.config import Settings
from vafa.loyalty.referrals.handlers import referrals_handler

VIEWER = principal_headers("staff", "v", "viewer")


def envelope(message: Message) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()),
        source="/vafa/profile",
        type=message.DESCRIPTOR.full_name,
        time=datetime.now(UTC),
        subject="",
        message=message,
    )


def registered(
    customer: uuid.UUID, code: str = "", phones: tuple[str, ...] = (), address: str = ""
) -> profile_pb2.CustomerRegistered:
    return profile_pb2.CustomerRegistered(
        customer=profile_pb2.CustomerSnapshot(
            customer_id=str(customer),
            referred_by_code=code,
            phones=list(phones),
            emails=[f"{customer.hex[:8]}@example.com"],
            address=address,
        ),
        source="club_signup",
    )


def paid(customer: uuid.UUID, ref: str) -> profile_pb2.PurchaseAttributed:
    return profile_pb2.PurchaseAttributed(
        customer_id=str(customer),
        kind=profile_pb2.PURCHASE_KIND_PAID,
        order=shop_orders_pb2.Order(
            order_ref=ref, total=common_pb2.Money(amount_minor=1000, currency="USD")
        ),
    )


async def apply(db: Database, settings: Settings, *messages: Message) -> None:
    """Each message as the consumer applies it, one transaction each (no inbox: replays of the
    same meaning must be harmless by business key alone)."""
    handler = referrals_handler(settings)
    for m in messages:
        async with db.sessionmaker() as s:
            await handler(s, [envelope(m)])
            await s.commit()


async def code_of(client: httpx.AsyncClient, customer: uuid.UUID) -> str:
    r = await client.get(
        "/v1/club/me/referral", headers=principal_headers("member", str(customer), "")
    )
    assert r.status_code == 200, r.text
    again = await client.get(
        "/v1/club/me/referral", headers=principal_headers("member", str(customer), "")
    )
    assert again.json()["code"] == r.json()["code"]  # made once
    return str(r.json()["code"])


async def balances(db: Database, *customers: uuid.UUID) -> list[int]:
    async with db.sessionmaker() as s:
        rows = dict(
            (
                await s.execute(
                    text(
                        "SELECT customer_id, balance FROM accounts "
                        "WHERE customer_id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": list(customers)},
                )
            ).all()
        )
    return [int(rows.get(c, 0)) for c in customers]


async def referral(db: Database, referred: uuid.UUID) -> dict[str, object]:
    async with db.sessionmaker() as s:
        row = (
            (
                await s.execute(
                    text("SELECT * FROM referrals WHERE referred_id = :id"), {"id": referred}
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def completed_events(db: Database, referred: uuid.UUID) -> int:
    async with db.sessionmaker() as s:
        n = await s.scalar(
            text(
                "SELECT count(*) FROM outbox WHERE headers::text LIKE '%ReferralCompleted%' "
                "AND encode(payload, 'escape') LIKE :id"
            ),
            {"id": f"%{referred}%"},
        )
    return int(n or 0)


async def test_both_sides_earn_once(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    referrer, friend = uuid.uuid4(), uuid.uuid4()
    code = await code_of(client, referrer)
    typed = code.lower()[:4] + " " + code[4:]  # as a person types it
    first, second = paid(friend, f"ref:{friend}:1"), paid(friend, f"ref:{friend}:2")
    await apply(db, settings, registered(friend, typed), first, registered(friend, typed), first)
    await apply(db, settings, second)
    assert await balances(db, referrer, friend) == [
        settings.referral_referrer_points,
        settings.referral_referred_points,
    ]
    r = await referral(db, friend)
    assert (r["status"], r["referrer_id"], r["order_ref"]) == (
        "completed",
        referrer,
        first.order.order_ref,
    )
    assert await completed_events(db, friend) == 1
    report = (
        await client.get(f"/v1/loyalty/referrals?referrer_id={referrer}", headers=VIEWER)
    ).json()
    assert report["by_status"] == {"completed": 1}
    assert (report["referrer_points"], report["referred_points"]) == (100, 50)
    [row] = report["referrals"]
    assert row["referred_id"] == str(friend) and row["code"] == code


async def test_first_payment_before_registration_still_completes(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    referrer, friend = uuid.uuid4(), uuid.uuid4()
    code = await code_of(client, referrer)
    await apply(db, settings, paid(friend, f"early:{friend}"), registered(friend, code))
    assert (await referral(db, friend))["status"] == "completed"
    assert await balances(db, referrer, friend) == [100, 50]


async def test_self_referral_is_refused(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    me, other_file = uuid.uuid4(), uuid.uuid4()
    await apply(db, settings, registered(me, phones=("+989120001234",)))
    code = await code_of(client, me)
    # A second file of the same person: the same phone written differently.
    await apply(
        db,
        settings,
        registered(other_file, code, phones=("+98 912 000 ۱۲۳۴",)),
        paid(other_file, f"self:{other_file}"),
    )
    r = await referral(db, other_file)
    assert (r["status"], r["note"]) == ("refused", "self_referral:phone")
    assert await balances(db, me, other_file) == [0, 0]
    # Your own code, and a code nobody has.
    await apply(db, settings, registered(me, code))
    assert (await referral(db, me))["note"] == "self_referral:same_customer"
    stranger = uuid.uuid4()
    await apply(db, settings, registered(stranger, "NOSUCHCODE"), paid(stranger, f"s:{stranger}"))
    assert (await referral(db, stranger))["note"] == "unknown_code"
    assert await completed_events(db, other_file) == 0
    # The same address (Persian digits, Arabic yeh) is one household too.
    home = "تهران، خیابان ولیعصر، پلاک ۱۲"
    a, b = uuid.uuid4(), uuid.uuid4()
    await apply(db, settings, registered(a, address=home))
    await apply(
        db, settings, registered(b, await code_of(client, a), address="تهران خيابان ولیعصر پلاک 12")
    )
    assert (await referral(db, b))["note"] == "self_referral:address"
    # Erasure drops what the guard kept of a customer (the referral, ids only, stays).
    await apply(db, settings, profile_pb2.CustomerErased(customer_id=str(a)))
    async with db.sessionmaker() as s:
        kept = await s.scalar(
            text("SELECT count(*) FROM customer_contacts WHERE customer_id = :id"), {"id": a}
        )
    assert kept == 0 and (await referral(db, b))["status"] == "refused"


async def test_referrer_cap_per_period(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    capped = settings.model_copy(update={"referral_cap": 2})
    referrer = uuid.uuid4()
    code = await code_of(client, referrer)
    friends = [uuid.uuid4() for _ in range(3)]
    for f in friends:
        await apply(db, capped, registered(f, code), paid(f, f"cap:{f}"))
    assert await balances(db, referrer, *friends) == [200, 50, 50, 50]
    last = await referral(db, friends[2])
    assert (last["status"], last["note"], last["referrer_points"]) == (
        "completed",
        "referrer_capped",
        0,
    )


async def test_referral_through_the_worker(
    client: httpx.AsyncClient, db: Database, settings: ServiceSettings, worker: object
) -> None:
    referrer, friend = uuid.uuid4(), uuid.uuid4()
    code = await code_of(client, referrer)
    producer = make_producer(settings.kafka, client_id="referral-test")
    await producer.start()
    try:
        for topic, message in (
            ("profile.customers.v1", registered(friend, code)),
            ("profile.purchases.v1", paid(friend, f"w:{friend}")),
        ):
            headers, value = cloudevents.encode(
                message, source="/vafa/profile", subject=str(friend), event_id=str(uuid.uuid4())
            )
            await producer.send_and_wait(
                settings.kafka.topic(topic), value=value, key=str(friend).encode(), headers=headers
            )
    finally:
        await producer.stop()

    async def done() -> bool:
        async with db.sessionmaker() as s:
            n = await s.scalar(
                text("SELECT count(*) FROM ledger_entries WHERE idempotency_key LIKE :k"),
                {"k": f"referral:{friend}:%"},
            )
        return n == 2

    await eventually(done, within=60, what="both sides of the referral earned")
    assert (await referral(db, friend))["status"] == "completed"
    # The referrer earned the referral only; the friend also earned for the order itself.
    [referrer_balance, friend_balance] = await balances(db, referrer, friend)
    assert referrer_balance == 100 and friend_balance >= 50


async def test_referrer_cap_holds_under_concurrent_completions(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    capped = settings.model_copy(update={"referral_cap": 2})
    referrer = uuid.uuid4()
    code = await code_of(client, referrer)
    friends = [uuid.uuid4() for _ in range(8)]
    await apply(db, capped, *(registered(f, code) for f in friends))
    wide = Database(db.url, pool_size=10)
    handler = referrals_handler(capped)
    start = asyncio.Event()

    async def pay(friend: uuid.UUID) -> None:
        async with wide.sessionmaker() as s:
            await start.wait()
            await handler(s, [envelope(paid(friend, f"conc:{friend}"))])
            await s.commit()

    try:
        tasks = [asyncio.create_task(pay(f)) for f in friends]
        await asyncio.sleep(0.05)
        start.set()
        await asyncio.gather(*tasks)
    finally:
        await wide.dispose()
    assert await balances(db, referrer) == [2 * capped.referral_referrer_points]
    assert await balances(db, *friends) == [capped.referral_referred_points] * len(friends)
    notes = [(await referral(db, f))["note"] for f in friends]
    assert notes.count("referrer_capped") == len(friends) - 2

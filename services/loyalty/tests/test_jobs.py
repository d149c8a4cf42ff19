"""Expiry, warnings, unlocks, birthdays, merges, erasures, and the member/staff reads built on
lots: against the real database, the jobs committing chunk by chunk as in the worker."""

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.loyalty import ledger
from vafa.loyalty.points import jobs, members, service, store
from vafa.loyalty.rules import service as rules_service
from vafa.loyalty.rules.definitions import Birthday

NOW = datetime.now(UTC).replace(microsecond=0)
VIEWER = principal_headers("staff", "v", "viewer")


def member(customer: uuid.UUID) -> dict[str, str]:
    return principal_headers("member", str(customer), "")


async def events(session: AsyncSession, customer: uuid.UUID) -> list[Any]:
    rows = await session.execute(
        text("SELECT headers, payload FROM outbox WHERE key = :k ORDER BY id"), {"k": str(customer)}
    )
    return [
        cloudevents.decode([(k, v.encode()) for k, v in headers], payload).message
        for headers, payload in rows
    ]


async def account(session: AsyncSession, customer: uuid.UUID) -> tuple[int, int]:
    row = (
        await session.execute(
            text("SELECT balance, pending FROM accounts WHERE customer_id = :c"), {"c": customer}
        )
    ).one()
    return int(row[0]), int(row[1])


async def test_expiry_expires_due_lots_once_and_warns_once_per_threshold(db: Database) -> None:
    c = uuid.uuid4()
    async with db.sessionmaker() as s:
        for key, points, expires in [
            ("old", 30, NOW - timedelta(days=1)),
            ("soon", 20, NOW + timedelta(days=5)),
            ("month", 10, NOW + timedelta(days=20)),
            ("far", 40, NOW + timedelta(days=200)),
        ]:
            await ledger.grant(
                s,
                customer_id=c,
                points=points,
                idempotency_key=f"job:{c}:{key}",
                reason="test",
                expires_at=expires,
                now=NOW - timedelta(days=300),
            )
        await s.commit()
    first = await jobs.run_expiry(db.sessionmaker, now=NOW, warning_days=[30, 7])
    again = await jobs.run_expiry(db.sessionmaker, now=NOW, warning_days=[30, 7])
    assert first.expired_lots >= 1 and again.expired_lots == 0
    async with db.sessionmaker() as s:
        assert await account(s, c) == (70, 0)
        got = await events(s, c)
        assert (
            await s.scalar(
                text(
                    "SELECT count(*) FROM ledger_entries WHERE customer_id = :c AND kind = 'expire'"
                ),
                {"c": c},
            )
            == 1
        )
        assert (await service.reconcile(s)).mismatch_count == 0
    expired = [e for e in got if isinstance(e, loyalty_pb2.PointsExpired)]
    assert [(e.points, e.balance) for e in expired] == [(30, 70)]
    warnings = sorted(
        (e.days_ahead, e.points) for e in got if isinstance(e, loyalty_pb2.PointsExpiryWarning)
    )
    # The 5-day lot: its nearest threshold only (7); the 20-day lot: 30; the far one: none.
    assert warnings == [(7, 20), (30, 10)]


async def test_pending_points_unlock_when_due_or_at_fulfilment(session: AsyncSession) -> None:
    from vafa.events.v1 import common_pb2, profile_pb2, shop_orders_pb2
    from vafa.loyalty.points import rules

    c = uuid.uuid4()
    policy = store.Policy(pending_days=14)

    def msg(ref: str, kind: int) -> profile_pb2.PurchaseAttributed:
        return profile_pb2.PurchaseAttributed(
            customer_id=str(c),
            kind=kind,  # type: ignore[arg-type]
            order=shop_orders_pb2.Order(
                order_ref=ref, total=common_pb2.Money(amount_minor=10_000, currency="USD")
            ),
        )

    paid_at = NOW - timedelta(days=20)
    await store.apply_purchases(
        session,
        [
            rules.read_purchase(msg(f"a:{c}", profile_pb2.PURCHASE_KIND_PAID), at=paid_at),
            rules.read_purchase(msg(f"b:{c}", profile_pb2.PURCHASE_KIND_PAID), at=NOW),
        ],
        policy=policy,
    )
    assert await account(session, c) == (0, 200)
    await store.apply_purchases(
        session,
        [rules.read_purchase(msg(f"b:{c}", profile_pb2.PURCHASE_KIND_FULFILLED))],
        policy=policy,
    )
    assert await account(session, c) == (100, 100)
    await jobs.expire_and_unlock(session, now=NOW, only=[c])
    assert await account(session, c) == (200, 0)
    unlocked = [e for e in await events(session, c) if isinstance(e, loyalty_pb2.PointsUnlocked)]
    assert sorted(e.order_ref for e in unlocked) == [f"a:{c}", f"b:{c}"]


async def test_birthday_bonus_once_per_year(db: Database) -> None:
    c = uuid.uuid4()
    tier = f"t-{c}"
    today = NOW.date()
    async with db.sessionmaker() as s:
        await members.set_birth_dates(s, {c: date(1990, today.month, min(today.day, 28))})
        await s.execute(
            text("UPDATE accounts SET tier = :t WHERE customer_id = :c"), {"t": tier, "c": c}
        )
        rule = await rules_service.create_rule(
            s, name="bday", priority=1, budget=None, definition=Birthday(points=50, tiers=[tier])
        )
        await rules_service.publish(s, rule_id=rule.id, author="t", now=NOW - timedelta(days=1))
        await s.commit()
    policy = store.Policy()
    try:
        when = NOW.replace(day=min(today.day, 28))
        await jobs.grant_birthdays(db.sessionmaker, policy=policy, now=when)
        await jobs.grant_birthdays(db.sessionmaker, policy=policy, now=when + timedelta(hours=1))
        async with db.sessionmaker() as s:
            assert await account(s, c) == (50, 0)
            # Erased: the birth date goes, the points stay; no more birthdays.
            await members.erase(s, customer_id=c)
            await s.commit()
            born = await s.scalar(
                text("SELECT birth_date FROM accounts WHERE customer_id = :c"), {"c": c}
            )
            assert born is None and await account(s, c) == (50, 0)
    finally:
        async with db.sessionmaker() as s:
            await rules_service.archive(s, rule_id=rule.id)
            await s.commit()


async def test_a_merge_moves_lots_and_balances_once(session: AsyncSession) -> None:
    survivor, merged = uuid.uuid4(), uuid.uuid4()
    await ledger.grant(
        session, customer_id=survivor, points=10, idempotency_key=f"m:{survivor}", reason="t"
    )
    await ledger.grant(
        session,
        customer_id=merged,
        points=25,
        idempotency_key=f"m:{merged}",
        reason="t",
        expires_at=NOW + timedelta(days=3),
    )
    await ledger.grant(
        session,
        customer_id=merged,
        points=5,
        idempotency_key=f"m:{merged}:p",
        reason="t",
        pending_until=NOW + timedelta(days=3),
    )
    merge_id = f"merge-{merged}"
    assert await members.merge(session, survivor_id=survivor, merged_id=merged, merge_id=merge_id)
    assert not await members.merge(
        session, survivor_id=survivor, merged_id=merged, merge_id=merge_id
    )
    assert await account(session, survivor) == (35, 5)
    assert await account(session, merged) == (0, 0)
    # The moved lot keeps its expiry: the survivor's next spend draws it first.
    spent = await ledger.spend(
        session,
        customer_id=survivor,
        points=20,
        idempotency_key=f"m:{survivor}:s",
        reason="reward",
        ref="x",
    )
    draws = (
        await session.execute(
            text(
                "SELECT l.points, d.points FROM lot_draws d JOIN lots l ON l.id = d.lot_id WHERE d.entry_id = :e"
            ),
            {"e": spent.entry_id},
        )
    ).all()
    assert [tuple(d) for d in draws] == [(25, 20)]
    assert (await service.reconcile(session)).mismatch_count == 0


async def test_member_reads_points_history_pages_and_staff_reads_liability(
    client: httpx.AsyncClient, db: Database
) -> None:
    c = uuid.uuid4()
    async with db.sessionmaker() as s:
        for i in range(5):
            await ledger.grant(
                s,
                customer_id=c,
                points=10 + i,
                idempotency_key=f"h:{c}:{i}",
                reason="bonus",
                expires_at=NOW + timedelta(days=10 * (i + 1)),
            )
        await ledger.spend(
            s, customer_id=c, points=12, idempotency_key=f"h:{c}:s", reason="reward", ref="R1"
        )
        await ledger.grant(
            s,
            customer_id=c,
            points=7,
            idempotency_key=f"h:{c}:p",
            reason="order",
            pending_until=NOW + timedelta(days=5),
        )
        await s.commit()
    me = await client.get("/v1/club/me/points", headers=member(c))
    assert me.status_code == 200
    body = me.json()
    assert (body["balance"], body["pending"]) == (60 - 12, 7)
    # 10 (first lot) was spent whole, 2 of the second (11): next to expire is the rest of it.
    assert body["next_expiry_points"] == 9
    page1 = await client.get("/v1/club/me/points/history?limit=4", headers=member(c))
    items = page1.json()["items"]
    assert [(i["kind"], i["delta"]) for i in items] == [
        ("earn", 0),
        ("spend", -12),
        ("earn", 14),
        ("earn", 13),
    ]
    assert items[0]["pending_delta"] == 7 and items[1]["ref"] == "R1"
    before = page1.json()["next_before"]
    page2 = await client.get(
        f"/v1/club/me/points/history?limit=4&before={before}", headers=member(c)
    )
    assert [i["delta"] for i in page2.json()["items"]] == [12, 11, 10]
    assert page2.json()["next_before"] is None
    staff = await client.get(f"/v1/customers/{c}/points/history", headers=VIEWER)
    assert len(staff.json()["items"]) == 7
    assert (
        await client.get(f"/v1/customers/{c}/points/history", headers=member(c))
    ).status_code == 403
    report = await client.get("/v1/loyalty/liability", headers=VIEWER)
    assert report.status_code == 200
    r = report.json()
    assert r["outstanding_points"] == r["available_points"] + r["pending_points"] >= 55
    assert sum(m["points"] for m in r["by_expiry_month"]) == r["outstanding_points"]
    assert r["value_minor"] == r["outstanding_points"]  # 1 minor unit per point by default
    jalali = await client.get("/v1/loyalty/liability?calendar=jalali", headers=VIEWER)
    assert jalali.json()["calendar"] == "jalali"
    assert jalali.json()["outstanding_points"] == r["outstanding_points"]
    bad = await client.get("/v1/loyalty/liability?calendar=julian", headers=VIEWER)
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/query/calendar"


async def test_the_reconcile_command_proves_the_ledger_and_finds_tampering(
    db: Database, database_url: str
) -> None:
    from vafa.loyalty.points import cli

    c = uuid.uuid4()
    async with db.sessionmaker() as s:
        await ledger.grant(s, customer_id=c, points=9, idempotency_key=f"cli:{c}", reason="t")
        await s.commit()
    code, body = await cli.reconcile(database_url)
    assert code == 0 and body["mismatch_count"] == 0 and body["lot_mismatch_count"] == 0
    async with db.sessionmaker() as s:
        await s.execute(text("UPDATE lots SET remaining = 8 WHERE customer_id = :c"), {"c": c})
        await s.commit()
    try:
        code, body = await cli.reconcile(database_url)
        assert code == 1 and body["lot_mismatch_count"] == 1
        assert [m["customer_id"] for m in body["mismatches"]] == [c]  # type: ignore[attr-defined]
    finally:
        async with db.sessionmaker() as s:
            await s.execute(text("UPDATE lots SET remaining = 9 WHERE customer_id = :c"), {"c": c})
            await s.commit()


async def test_customer_events_apply_in_log_order_in_one_batch(session: AsyncSession) -> None:
    """Registered (with a birth date), points, merged into another, erased — one polled batch:
    the merge moves what came before it; the erasure drops the birth date, not the points."""
    from vafa.events.v1 import profile_pb2
    from vafa.loyalty.config import Settings
    from vafa.loyalty.points.handlers import customers_handler

    survivor, merged = uuid.uuid4(), uuid.uuid4()
    await ledger.grant(
        session, customer_id=merged, points=12, idempotency_key=f"b:{merged}", reason="t"
    )

    def env(msg: Any) -> cloudevents.Envelope:
        return cloudevents.Envelope(
            id=str(uuid.uuid4()), source="/t", type="t", time=NOW, subject="", message=msg
        )

    registered = profile_pb2.CustomerRegistered(
        customer=profile_pb2.CustomerSnapshot(customer_id=str(survivor), birth_date="1370-01-01")
    )
    updated = profile_pb2.CustomerUpdated(
        customer=profile_pb2.CustomerSnapshot(customer_id=str(survivor), birth_date="1991-03-21")
    )
    merge = profile_pb2.CustomerMerged(
        survivor_id=str(survivor), merged_id=str(merged), merge_id=f"mg-{merged}"
    )
    erased = profile_pb2.CustomerErased(customer_id=str(merged))
    batch = [env(registered), env(updated), env(merge), env(erased)]
    handler = customers_handler(Settings())
    await handler(session, batch)
    await handler(session, batch)  # redelivered as a whole: nothing more
    assert await account(session, survivor) == (12, 0)
    assert await account(session, merged) == (0, 0)
    rows = (
        await session.execute(
            text(
                "SELECT customer_id, birth_date, merged_into, erased_at IS NOT NULL FROM accounts "
                "WHERE customer_id = ANY(:ids)"
            ),
            {"ids": [survivor, merged]},
        )
    ).all()
    state = {r[0]: tuple(r[1:]) for r in rows}
    assert state[survivor] == (date(1991, 3, 21), None, False)
    assert state[merged] == (None, survivor, True)


async def test_liability_by_jalali_or_gregorian_month_in_the_report_time_zone(
    session: AsyncSession,
) -> None:
    """Lots expiring in 2099 (no other test's): 31 May 22:00 UTC is already 1 June in Tehran;
    both days are in Khordad 1478."""
    c = uuid.uuid4()
    for key, points, expires in [
        ("may", 40, datetime(2099, 5, 31, 22, tzinfo=UTC)),
        ("june", 2, datetime(2099, 6, 15, 12, tzinfo=UTC)),
    ]:
        await ledger.grant(
            session,
            customer_id=c,
            points=points,
            idempotency_key=f"lia:{c}:{key}",
            reason="t",
            expires_at=expires,
        )
    from decimal import Decimal

    def months(report: service.Liability) -> dict[str, int]:
        return {
            m.month: m.points
            for m in report.by_expiry_month
            if m.month.startswith(("2099", "1478"))
        }

    utc = await service.liability(session, point_value_minor=Decimal("0.5"), currency="IRR")
    tehran = await service.liability(
        session, point_value_minor=Decimal(1), currency="IRR", timezone="Asia/Tehran"
    )
    jalali = await service.liability(
        session,
        point_value_minor=Decimal(1),
        currency="IRR",
        calendar="jalali",
        timezone="Asia/Tehran",
    )
    assert months(utc) == {"2099-05": 40, "2099-06": 2}
    assert months(tehran) == {"2099-06": 42}
    assert months(jalali) == {"1478-03": 42}
    may = next(m for m in utc.by_expiry_month if m.month == "2099-05")
    assert may.value_minor == 20  # 40 points at half a minor unit each

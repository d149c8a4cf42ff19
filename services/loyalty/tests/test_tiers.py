"""Tiers on the real database and broker: upgrades at once (also through the worker, on the
PointsEarned the ledger publishes), downgrades only at re-evaluation, progress for members."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import text

from vafa.events.v1 import common_pb2, loyalty_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.kit.testing.poll import eventually
from vafa.loyalty import ledger, purchases
from vafa.loyalty.tiers import service

MARKETER = principal_headers("staff", "m", "marketer")
VIEWER = principal_headers("staff", "v", "viewer")
ADMIN = principal_headers("staff", "a", "admin")
PROBLEM = "application/problem+json"

LADDER = [
    {"code": "bronze", "name": "Bronze", "threshold": 0},
    {"code": "silver", "name": "Silver", "threshold": 500, "earn_multiplier": "1.25"},
    {"code": "gold", "name": "Gold", "threshold": 2000, "earn_multiplier": "1.5"},
]


@pytest.fixture(autouse=True)
async def no_ladder(db: Database) -> AsyncIterator[None]:
    """The ladder is one for the whole club: each test here starts without one and leaves
    none behind (other tests' members would get tiers and TierChanged events)."""

    async def clear() -> None:
        async with db.sessionmaker() as s:
            await s.execute(text("DELETE FROM tiers"))
            await s.commit()

    await clear()
    yield
    await clear()


async def ladder(client: httpx.AsyncClient, **common: object) -> None:
    base = {"measure": "points", "window": "rolling_12_months", **common}
    for tier in LADDER:
        r = await client.post("/v1/loyalty/tiers", json={**base, **tier}, headers=MARKETER)
        assert r.status_code == 201, r.text


async def grant(db: Database, customer: uuid.UUID, points: int, key: str) -> None:
    async with db.sessionmaker() as s:
        await ledger.grant(
            s, customer_id=customer, points=points, idempotency_key=key, reason="order"
        )
        await s.commit()


async def tier_of(db: Database, customer: uuid.UUID) -> tuple[str | None, Decimal | None]:
    async with db.sessionmaker() as s:
        row = (
            await s.execute(
                text("SELECT tier, tier_multiplier FROM accounts WHERE customer_id = :c"),
                {"c": customer},
            )
        ).one()
    return row.tier, row.tier_multiplier


async def tier_events(db: Database, customer: uuid.UUID) -> list[tuple[str, str, str]]:
    async with db.sessionmaker() as s:
        rows = (
            await s.execute(
                text("SELECT headers, payload FROM outbox WHERE key = :k ORDER BY id"),
                {"k": str(customer)},
            )
        ).all()
    out = []
    for headers, payload in rows:
        env = cloudevents.decode([(k, v.encode()) for k, v in headers], payload)
        if isinstance(env.message, loyalty_pb2.TierChanged):
            m = env.message
            out.append((m.previous_tier, m.tier, m.direction))
    return out


async def evaluate(db: Database, customer: uuid.UUID, *, now: datetime | None = None) -> None:
    async with db.sessionmaker() as s:
        await service.evaluate(s, customer_ids=[customer], allow_downgrade=False, now=now)
        await s.commit()


async def test_upgrade_at_once_downgrade_only_at_reevaluation(
    client: httpx.AsyncClient, db: Database
) -> None:
    await ladder(client)
    c = uuid.uuid4()
    await grant(db, c, 600, f"t1:{c}")
    await evaluate(db, c)
    assert await tier_of(db, c) == ("silver", Decimal("1.25"))
    await grant(db, c, 1500, f"t2:{c}")
    await evaluate(db, c)
    assert await tier_of(db, c) == ("gold", Decimal("1.5"))
    r = await client.get(f"/v1/customers/{c}/tier", headers=VIEWER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["tier"]["code"], body["value"], body["to_keep"], body["next_tier"]) == (
        "gold",
        2100,
        0,
        None,
    )
    # A year and more later the points have left the window: an event does not lower the tier…
    later = datetime.now(UTC) + timedelta(days=400)
    await evaluate(db, c, now=later)
    assert await tier_of(db, c) == ("gold", Decimal("1.5"))
    # …the re-evaluation does.
    done = await service.reevaluate_all(db, now=later)
    assert done.downgraded >= 1
    assert await tier_of(db, c) == ("bronze", Decimal("1.000"))
    assert await tier_events(db, c) == [
        ("", "silver", "initial"),
        ("silver", "gold", "upgrade"),
        ("gold", "bronze", "downgrade"),
    ]
    # Re-evaluating again changes nothing and says nothing.
    await service.reevaluate_all(db, now=later)
    assert len(await tier_events(db, c)) == 3


async def test_progress_for_the_member(client: httpx.AsyncClient, db: Database) -> None:
    await ladder(client)
    c = uuid.uuid4()
    await grant(db, c, 520, f"p:{c}")
    await evaluate(db, c)
    r = await client.get("/v1/club/me/tier", headers=principal_headers("member", str(c), ""))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tier"]["code"] == "silver" and body["next_tier"]["code"] == "gold"
    assert (body["to_next"], body["to_keep"]) == (1480, 0)
    assert body["message"] == "1480 points more to reach Gold, 0 to keep Silver"
    assert Decimal(body["earn_multiplier"]) == Decimal("1.25")
    r = await client.get(
        "/v1/club/me/tier", headers=principal_headers("member", str(uuid.uuid4()), "")
    )
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM


async def test_spend_ladder_counts_paid_orders_net_of_refunds(
    client: httpx.AsyncClient, db: Database
) -> None:
    await ladder(client, measure="spend", currency="usd", window="calendar_year")
    c = uuid.uuid4()
    order = shop_orders_pb2.Order(
        order_ref=f"spend:{c}", total=common_pb2.Money(amount_minor=2500, currency="USD")
    )
    paid = profile_pb2.PurchaseAttributed(
        customer_id=str(c), kind=profile_pb2.PURCHASE_KIND_PAID, order=order
    )
    refund = profile_pb2.PurchaseAttributed(
        customer_id=str(c),
        kind=profile_pb2.PURCHASE_KIND_REFUNDED,
        order=order,
        refund=shop_orders_pb2.Refund(
            refund_id="r1", amount=common_pb2.Money(amount_minor=600, currency="USD")
        ),
    )
    now = datetime.now(UTC)
    async with db.sessionmaker() as s:
        for event in (paid, paid, refund, refund):  # replays add nothing
            await purchases.record(s, event, at=now)
        await s.commit()
    await evaluate(db, c)
    assert (await tier_of(db, c))[0] == "silver"  # 1900 cents: silver (500), not gold (2000)
    body = (await client.get(f"/v1/customers/{c}/tier", headers=VIEWER)).json()
    assert (body["value"], body["to_next"], body["currency"]) == (1900, 100, "USD")
    assert body["message"] == "100 USD more to reach Gold, 0 to keep Silver"


async def test_ladder_crud_and_rules(client: httpx.AsyncClient) -> None:
    await ladder(client)
    tiers = (await client.get("/v1/loyalty/tiers", headers=VIEWER)).json()
    assert [t["code"] for t in tiers] == ["bronze", "silver", "gold"]
    base = {"measure": "points", "window": "rolling_12_months", "name": "X"}
    r = await client.post(
        "/v1/loyalty/tiers",
        json={**base, "code": "x", "threshold": 9, "window": "lifetime"},
        headers=MARKETER,
    )
    assert r.status_code == 409 and r.json()["pointer"] == "/body/window"
    r = await client.post(
        "/v1/loyalty/tiers", json={**base, "code": "x", "threshold": 500}, headers=MARKETER
    )
    assert r.status_code == 409 and r.json()["pointer"] == "/body/threshold"
    r = await client.post(
        "/v1/loyalty/tiers", json={**base, "code": "gold", "threshold": 9}, headers=MARKETER
    )
    assert r.status_code == 409
    r = await client.post(
        "/v1/loyalty/tiers",
        json={**base, "code": "y", "threshold": 9, "measure": "spend"},
        headers=MARKETER,
    )
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    r = await client.post(
        "/v1/loyalty/tiers", json={**base, "code": "Bad Code!", "threshold": 9}, headers=MARKETER
    )
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/code"
    r = await client.put(
        "/v1/loyalty/tiers/gold",
        json={**base, "name": "Gold+", "threshold": 3000, "free_shipping": True},
        headers=MARKETER,
    )
    assert r.status_code == 200 and r.json()["free_shipping"] is True
    assert (await client.delete("/v1/loyalty/tiers/gold", headers=MARKETER)).status_code == 204
    assert (await client.get("/v1/loyalty/tiers/gold", headers=VIEWER)).status_code == 404
    assert (await client.post("/v1/loyalty/tiers", json=base, headers=VIEWER)).status_code == 403
    r = await client.post("/v1/loyalty/tiers/reevaluation", headers=MARKETER)
    assert r.status_code == 403
    r = await client.post("/v1/loyalty/tiers/reevaluation", headers=ADMIN)
    assert r.status_code == 200 and r.json()["evaluated"] >= 0


async def test_points_earned_upgrade_through_the_worker(
    client: httpx.AsyncClient, db: Database, worker: object
) -> None:
    """The ledger's PointsEarned goes out through the outbox relay to loyalty.events.v1, and
    the loyalty.tiers consumer upgrades the member."""
    await ladder(client)
    c = uuid.uuid4()
    await grant(db, c, 2500, f"w:{c}")

    async def gold() -> bool:
        return (await tier_of(db, c))[0] == "gold"

    await eventually(gold, within=60, what="the tiers consumer upgraded the member to gold")
    assert await tier_events(db, c) == [("", "gold", "initial")]

"""Earning rules: precedence, versions by purchase time, caps, budgets under concurrency,
interactions, products from the catalogue, the API and the dry run.

Rules are global, so a test that commits one limits it to a tier only its own customers have
(or leaves it a draft): the other tests of the run earn as before."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, inventory_pb2, profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.loyalty.config import Settings
from vafa.loyalty.points import rules, store
from vafa.loyalty.points.handlers import customers_handler
from vafa.loyalty.products.handlers import products_handler
from vafa.loyalty.rules import engine
from vafa.loyalty.rules import service as rules_service
from vafa.loyalty.rules.definitions import (
    Cap,
    FirstPurchase,
    FixedProduct,
    Interaction,
    Multiplier,
    PerUnit,
)

RATES = Settings().points_per_unit
POLICY = store.Policy(default_rates=RATES)
MARKETER = principal_headers("staff", "m", "marketer")
VIEWER = principal_headers("staff", "v", "viewer")
T = datetime(2030, 6, 15, 12, tzinfo=UTC)


def usd(minor: int) -> common_pb2.Money:
    return common_pb2.Money(amount_minor=minor, currency="USD")


def paid(
    customer: uuid.UUID, ref: str, lines: list[tuple[str, str, str, int, int]], total: int
) -> profile_pb2.PurchaseAttributed:
    """lines: (line_id, sku, vendor, quantity, line total minor)."""
    return profile_pb2.PurchaseAttributed(
        customer_id=str(customer),
        kind=profile_pb2.PURCHASE_KIND_PAID,
        order=shop_orders_pb2.Order(
            order_ref=ref,
            currency="USD",
            total=usd(total),
            line_items=[
                shop_orders_pb2.LineItem(
                    line_id=lid, sku=sku, vendor=vendor, quantity=q, total=usd(amount)
                )
                for lid, sku, vendor, q, amount in lines
            ],
        ),
    )


def active(rule_id: int, definition: object, priority: int = 100) -> engine.ActiveRule:
    return engine.ActiveRule(
        rule_id=rule_id,
        version=1,
        priority=priority,
        definition=definition,  # type: ignore[arg-type]
        valid_from=datetime(2000, 1, 1, tzinfo=UTC),
    )


def test_precedence_fixed_overrides_per_unit_multipliers_multiply_bonuses_add() -> None:
    rules_ = [
        active(1, PerUnit(currency="USD", points_per_unit=Decimal(2))),
        active(2, PerUnit(currency="USD", points_per_unit=Decimal(5)), priority=200),  # loses
        active(3, FixedProduct(sku="GIFT", points=40)),
        active(4, Multiplier(category="tea", factor=Decimal(3))),
        active(5, Multiplier(brand="Golestan", factor=Decimal("1.5"))),
        active(6, FirstPurchase(points=100)),
    ]
    products = {"TEA1": engine.ProductInfo(brand=None, category="tea", tags=())}
    score = engine.score_order(
        currency="USD",
        total_minor=3_000,  # 30 USD paid for 40 USD of lines: a 10 USD order discount
        lines=[
            engine.Line("l1", "TEA1", "Golestan", 1, 1_000),  # 10 USD: 2/unit ×3 ×1.5 → 90
            engine.Line("l2", "GIFT", "", 2, 2_000),  # fixed 40 × 2 units → 80, no multiplier
            engine.Line("l3", "X", "", 1, 1_000),  # 10 USD at 2 → 20
        ],
        rules=rules_,
        products=products,
        default_rates=RATES,
        at=T,
        first_purchase=True,
    )
    by_line = {line.line_id: line.points for line in score.lines}
    # The order total (30) is below the lines (40): per-unit amounts are scaled by 3/4.
    assert by_line == {"l1": 67, "l2": 80, "l3": 15}  # 7.5×2=15 ×3=45 ×1.5=67.5 → 67
    assert [(b.rule_id, b.points) for b in score.bonuses] == [(6, 100)]
    parts = {(p.rule_id, p.points) for line in score.lines for p in line.parts}
    assert parts == {(1, 15), (4, 30), (5, 22), (3, 80), (1, 15)}
    # A tier multiplier multiplies the lines, fixed points too.
    tiered = engine.score_order(
        currency="USD",
        total_minor=1_000,
        lines=[engine.Line("g", "GIFT", "", 1, 1_000)],
        rules=rules_,
        products=products,
        default_rates=RATES,
        at=T,
        tier_multiplier=Decimal("1.25"),
    )
    assert tiered.points == 50


def test_the_order_is_floored_once_not_line_by_line() -> None:
    lines = [
        engine.Line("a", "BOOK", "", 3, 3_750),  # 37.50 USD
        engine.Line("b", "PEN", "", 1, 499),  # 4.99
        engine.Line("c", "CARD", "", 1, 260),  # 2.60
    ]
    score = engine.score_order(
        currency="USD",
        total_minor=4_509,
        lines=lines,
        rules=[],
        products={},
        default_rates={"USD": Decimal(1)},
        at=T,
    )
    # 45.09 USD earns 45: the floors 37 + 4 + 2 lose 2, given to the largest fractions (.99, .6).
    assert score.points == 45
    assert {line.line_id: line.points for line in score.lines} == {"a": 37, "b": 5, "c": 3}


def test_rules_outside_their_dates_or_tiers_do_not_apply() -> None:
    rule = active(
        1,
        PerUnit(
            currency="USD",
            points_per_unit=Decimal(10),
            starts_at=T,
            ends_at=T + timedelta(days=1),
            tiers=["gold"],
        ),
    )
    common = {
        "currency": "USD",
        "total_minor": 1_000,
        "lines": [],
        "rules": [rule],
        "products": {},
        "default_rates": RATES,
    }
    assert engine.score_order(at=T, tier="gold", **common).points == 100  # type: ignore[arg-type]
    assert engine.score_order(at=T, tier="silver", **common).points == 10  # type: ignore[arg-type]
    late = T + timedelta(days=2)
    assert engine.score_order(at=late, tier="gold", **common).points == 10  # type: ignore[arg-type]


async def _publish(
    session: AsyncSession, definition: object, *, at: datetime, budget: int | None = None
) -> int:
    rule = await rules_service.create_rule(
        session,
        name="t",
        priority=100,
        budget=budget,
        definition=definition,  # type: ignore[arg-type]
    )
    await rules_service.publish(session, rule_id=rule.id, author="test", now=at)
    return rule.id


async def _set_tier(session: AsyncSession, customers: list[uuid.UUID], tier: str) -> None:
    await store.open_accounts(session, customers)
    await session.execute(
        text("UPDATE accounts SET tier = :t WHERE customer_id = ANY(:ids)"),
        {"t": tier, "ids": customers},
    )


async def test_a_purchase_is_scored_by_the_version_active_at_its_time(
    session: AsyncSession,
) -> None:
    c = uuid.uuid4()
    tier = f"t-{c}"
    await _set_tier(session, [c], tier)
    rid = await _publish(
        session, PerUnit(currency="USD", points_per_unit=Decimal(3), tiers=[tier]), at=T
    )
    await rules_service.update_rule(
        session,
        rule_id=rid,
        definition=PerUnit(currency="USD", points_per_unit=Decimal(7), tiers=[tier]),
    )
    await rules_service.publish(session, rule_id=rid, author="test", now=T + timedelta(days=10))
    before = rules.read_purchase(paid(c, f"v1:{c}", [], 1_000), at=T + timedelta(days=1))
    after = rules.read_purchase(paid(c, f"v2:{c}", [], 1_000), at=T + timedelta(days=11))
    old = rules.read_purchase(paid(c, f"v0:{c}", [], 1_000), at=T - timedelta(days=1))
    e1, e2, e0 = await store.apply_purchases(session, [before, after, old], policy=POLICY)
    assert (e1 and e1.delta, e2 and e2.delta, e0 and e0.delta) == (30, 70, 10)
    versions = await rules_service.versions(session, rule_id=rid)
    assert [(v.version, v.valid_to is None) for v in versions] == [(1, False), (2, True)]


async def test_caps_per_day_cut_what_is_earned_beyond_them(session: AsyncSession) -> None:
    c = uuid.uuid4()
    tier = f"t-{c}"
    await _set_tier(session, [c], tier)
    await _publish(session, Cap(period="day", points=100, tiers=[tier]), at=T)
    day = T + timedelta(hours=1)
    purchases = [
        rules.read_purchase(paid(c, f"cap{i}:{c}", [], 8_000), at=day + timedelta(minutes=i))
        for i in range(3)
    ] + [rules.read_purchase(paid(c, f"cap3:{c}", [], 8_000), at=day + timedelta(days=1))]
    entries = await store.apply_purchases(session, purchases, policy=POLICY)
    assert [e.delta if e else 0 for e in entries] == [80, 20, 0, 80]


async def test_a_budget_is_never_exceeded_by_concurrent_earners(db: Database) -> None:
    """Ten first purchases at once against a first-purchase bonus of 100 with a budget of 250:
    the bonus is given 100 + 100 + 50 and never more."""
    customers = [uuid.uuid4() for _ in range(10)]
    tier = f"t-{customers[0]}"
    async with db.sessionmaker() as s:
        await _set_tier(s, customers, tier)
        rid = await _publish(
            s, FirstPurchase(points=100, tiers=[tier]), at=T - timedelta(days=1), budget=250
        )
        await s.commit()
    wide = Database(db.url, pool_size=12)
    start = asyncio.Event()

    async def buy(c: uuid.UUID) -> None:
        async with wide.sessionmaker() as s:
            await start.wait()
            p = rules.read_purchase(paid(c, f"budget:{c}", [], 1_000), at=T)
            await store.apply_purchases(s, [p], policy=POLICY)
            await s.commit()

    try:
        tasks = [asyncio.create_task(buy(c)) for c in customers]
        await asyncio.sleep(0.05)
        start.set()
        await asyncio.gather(*tasks)
    finally:
        await wide.dispose()
    async with db.sessionmaker() as s:
        bonus = await s.scalar(
            text(
                "SELECT COALESCE(SUM(delta), 0) FROM ledger_entries "
                "WHERE idempotency_key LIKE 'earn:first:%' AND customer_id = ANY(:ids)"
            ),
            {"ids": customers},
        )
        used = await s.scalar(
            text("SELECT budget_used FROM earning_rules WHERE id = :i"), {"i": rid}
        )
        await rules_service.archive(s, rule_id=rid)
        await s.commit()
    assert bonus == used == 250


async def test_interactions_earn_once_per_timeline_entry(session: AsyncSession) -> None:
    c = uuid.uuid4()
    tier = f"t-{c}"
    await _set_tier(session, [c], tier)
    await _publish(session, Interaction(interaction_kind="call", points=2, tiers=[tier]), at=T)
    await _publish(
        session,
        Interaction(interaction_kind="sms", direction="inbound", points=1, tiers=[tier]),
        at=T,
    )
    handler = customers_handler(Settings())

    def env(entry: str, kind: str, direction: str = "") -> cloudevents.Envelope:
        msg = profile_pb2.InteractionRecorded(
            customer_id=str(c), entry_id=entry, kind=kind, direction=direction
        )
        msg.occurred_at.FromDatetime(T + timedelta(hours=1))
        return cloudevents.Envelope(
            id=f"e-{entry}", source="/t", type="t", time=T, subject=str(c), message=msg
        )

    batch = [
        env(f"{c}:1", "call"),
        env(f"{c}:2", "sms", "inbound"),
        env(f"{c}:3", "sms", "outbound"),
    ]
    await handler(session, batch)
    await handler(session, batch)  # the same entries again: nothing more
    balance = await session.scalar(
        text("SELECT balance FROM accounts WHERE customer_id = :c"), {"c": c}
    )
    assert balance == 3


async def test_products_from_the_catalogue_feed_category_multipliers(
    session: AsyncSession,
) -> None:
    c = uuid.uuid4()
    sku = f"SKU-{c}"
    tier = f"t-{c}"
    await _set_tier(session, [c], tier)

    def upserted(category: str, at: datetime) -> cloudevents.Envelope:
        msg = inventory_pb2.ProductUpserted(sku=sku, category=category, brand="B", tags=["نو"])
        msg.updated_at.FromDatetime(at)
        return cloudevents.Envelope(
            id=f"p-{category}", source="/t", type="t", time=at, subject=sku, message=msg
        )

    on_products = products_handler()
    await on_products(session, [upserted("coffee", T)])
    await on_products(session, [upserted("tea", T - timedelta(days=1))])  # older: ignored
    await _publish(session, Multiplier(category="coffee", factor=Decimal(2), tiers=[tier]), at=T)
    await _publish(session, Multiplier(tag="نو", factor=Decimal(3), tiers=[tier]), at=T)
    p = rules.read_purchase(paid(c, f"cat:{c}", [("1", sku, "", 1, 1_000)], 1_000), at=T)
    [entry] = await store.apply_purchases(session, [p], policy=POLICY)
    assert entry is not None and entry.delta == 60  # 10 × 2 × 3


async def test_rules_api_and_dry_run(client: httpx.AsyncClient, db: Database) -> None:
    bad = await client.post(
        "/v1/loyalty/rules",
        json={"name": "x", "definition": {"kind": "multiplier", "factor": "2"}},
        headers=MARKETER,
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    unknown = await client.post(
        "/v1/loyalty/rules",
        json={
            "name": "x",
            "definition": {"kind": "per_unit", "currency": "XXQ", "points_per_unit": 1},
        },
        headers=MARKETER,
    )
    assert unknown.status_code == 422
    assert any("currency" in e["pointer"] for e in unknown.json()["errors"])

    # Past purchases kept for the dry run (committed): two customers, three orders.
    a, b = uuid.uuid4(), uuid.uuid4()
    sku = f"DRY-{a}"
    async with db.sessionmaker() as s:
        purchases = [
            rules.read_purchase(paid(a, f"dry1:{a}", [("1", sku, "", 1, 5_000)], 5_000), at=T),
            rules.read_purchase(paid(a, f"dry2:{a}", [("1", "other", "", 1, 5_000)], 5_000), at=T),
            rules.read_purchase(paid(b, f"dry3:{b}", [("1", sku, "", 2, 9_000)], 9_000), at=T),
        ]
        await store.apply_purchases(s, purchases, policy=POLICY)
        await s.commit()
    created = await client.post(
        "/v1/loyalty/rules",
        json={
            "name": "double the dry sku",
            "budget": 1000,
            "definition": {"kind": "multiplier", "sku": sku, "factor": "2"},
        },
        headers=MARKETER,
    )
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["status"] == "draft" and rule["versions"] == []
    dry = await client.post(
        "/v1/loyalty/rules/dry-run",
        json={
            "definition": {"kind": "multiplier", "sku": sku, "factor": "2"},
            "rule_id": rule["id"],
            "since": (T - timedelta(hours=1)).isoformat(),
            "until": (T + timedelta(hours=1)).isoformat(),
        },
        headers=MARKETER,
    )
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert body["purchases"] >= 3
    assert body["purchases_affected"] == 2 and body["customers_affected"] == 2
    assert body["points_after"] - body["points_before"] == 50 + 90
    assert {s["order_ref"] for s in body["sample"]} == {f"dry1:{a}", f"dry3:{b}"}
    # The rule is still a draft: nothing published, nothing earned by it.
    got = await client.get(f"/v1/loyalty/rules/{rule['id']}", headers=VIEWER)
    assert got.status_code == 200 and got.json()["current_version"] is None
    archived = await client.post(f"/v1/loyalty/rules/{rule['id']}/archive", headers=MARKETER)
    assert archived.json()["status"] == "archived"
    again = await client.post(f"/v1/loyalty/rules/{rule['id']}/publish", headers=MARKETER)
    assert again.status_code == 409
    viewer = await client.post(
        "/v1/loyalty/rules/dry-run",
        json={"definition": {"kind": "first_purchase", "points": 5}},
        headers=VIEWER,
    )
    assert viewer.status_code == 403


def test_cap_periods_follow_the_shops_time_zone_and_calendar() -> None:
    # Friday 2026-11-20 21:00 UTC is Saturday 00:30 in Tehran: a new day and a new Jalali week
    # (weeks start on Saturday), still Aban 1405 (Aban 30 = 2026-11-21).
    at = datetime(2026, 11, 20, 21, tzinfo=UTC)
    assert engine.period_keys(at) == {"day": "D2026-11-20", "week": "W2026-47", "month": "M2026-11"}
    tehran = engine.period_keys(at, timezone="Asia/Tehran", calendar="jalali")
    assert tehran == {"day": "D2026-11-21", "week": "WJ2026-11-21", "month": "MJ1405-08"}
    a_day_later = engine.period_keys(
        at + timedelta(days=1), timezone="Asia/Tehran", calendar="jalali"
    )
    assert a_day_later["week"] == "WJ2026-11-21" and a_day_later["month"] == "MJ1405-09"

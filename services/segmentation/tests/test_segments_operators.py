"""Every operator on every field type, every node kind, nesting and negation, evaluated by the
compiled SQL on the real database over a small world of customers (Persian text included)."""

import hashlib
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.segmentation.models import Features
from vafa.segmentation.segments import compiler, evaluation, service
from vafa.segmentation.segments import language as L

from .segments_fixtures import NOW, customer, purchase, set_features, unique

F = Features.__table__


async def matching(
    session: AsyncSession, definition: dict[str, Any], among: dict[str, uuid.UUID], tz: str = "UTC"
) -> set[str]:
    """The names of the customers in `among` the definition matches at NOW."""
    segments = evaluation.infos(await evaluation.active_segments(session))
    comp = compiler.compile_definition(
        L.parse(definition, segments=segments), compiler.resolver(segments)
    )
    rows = await session.scalars(
        select(F.c.customer_id).where(comp.match, F.c.customer_id.in_(among.values())),
        compiler.params(NOW, tz),
    )
    names = {v: k for k, v in among.items()}
    return {names[r] for r in rows}


@pytest.fixture
async def world(session: AsyncSession) -> dict[str, uuid.UUID]:
    return await make_world(session)


async def make_world(session: AsyncSession) -> dict[str, uuid.UUID]:
    """Four customers: a (Tehran, 5 orders, vip, champions...), b (Tabriz, 1 order, lost...),
    c (nothing known), d (Isfahan in Persian, a Persian tag)."""
    a = await customer(
        session,
        city="Tehran",
        orders_count=5,
        total_spent=500_000,
        consent_sms=True,
        tags=["vip", "fantasy"],
        purchase_months=[3, 4],
        last_order_at=NOW - timedelta(days=10),
        next_expected_at=NOW + timedelta(days=5),
        birth_date=date(1990, 6, 20),
        next_birthday=date(2030, 6, 20),
        custom_fields={"club": "gold-card"},
        interactions={"call": 3},
        discount_share=0.5,
        rfm_segment="champions",
        clv_band="high",
        tier="gold",
    )
    b = await customer(
        session,
        city="Tabriz",
        orders_count=1,
        total_spent=50_000,
        tags=["new"],
        purchase_months=[12],
        last_order_at=NOW - timedelta(days=100),
        next_birthday=date(2031, 1, 1),
        rfm_segment="lost",
        clv_band="low",
        tier="silver",
    )
    c = await customer(session)
    d = await customer(session, city="اصفهان", tags=["ویژه"], next_effective_date=date(2030, 6, 10))
    day = timedelta(days=1)
    first = await purchase(
        session,
        a,
        at=NOW - day,
        brand="Acme",
        category="fantasy-books",
        tags=["series-x"],
        quantity=2,
        amount=100_000,
        sku="hobbit",
    )
    # A second line of the same order: still one order.
    await purchase(session, a, at=NOW - day, order_ref=first, brand="Acme", quantity=0, amount=0)
    await purchase(
        session,
        a,
        at=NOW - 20 * day,
        brand="Acme",
        category="fantasy-books",
        quantity=2,
        amount=200_000,
    )
    await purchase(
        session,
        a,
        at=NOW - 100 * day,
        brand="Acme",
        category="fantasy-books",
        quantity=2,
        amount=300_000,
    )
    await purchase(session, b, at=NOW - 5 * day, brand="Acme", category="cookbooks", amount=50_000)
    return {"a": a, "b": b, "c": c, "d": d}


def f(field: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "op": op, "value": value}


CASES: list[tuple[dict[str, Any], set[str]]] = [
    # text
    (f("city", "eq", "Tehran"), {"a"}),
    (f("city", "neq", "Tehran"), {"b", "c", "d"}),
    (f("city", "in", ["Tehran", "Tabriz"]), {"a", "b"}),
    (f("city", "contains", "abr"), {"b"}),
    (f("city", "contains", "%"), set()),  # a LIKE wildcard is only a character
    (f("city", "starts_with", "Te"), {"a"}),
    (f("city", "starts_with", "اص"), {"d"}),
    (f("city", "exists", True), {"a", "b", "d"}),
    (f("city", "exists", False), {"c"}),
    # number
    (f("orders_count", "gt", 1), {"a"}),
    (f("orders_count", "gte", 1), {"a", "b"}),
    (f("orders_count", "lt", 1), {"c", "d"}),
    (f("orders_count", "lte", 1), {"b", "c", "d"}),
    (f("orders_count", "eq", 5), {"a"}),
    (f("orders_count", "neq", 5), {"b", "c", "d"}),
    (f("orders_count", "between", [1, 5]), {"a", "b"}),
    (f("orders_count", "in", [1, 5]), {"a", "b"}),
    (f("orders_count", "exists", True), {"a", "b", "c", "d"}),
    (f("discount_share", "gte", 0.5), {"a"}),
    # money
    (f("total_spent", "gte", 100_000), {"a"}),
    (f("total_spent", "between", [1, 100_000]), {"b"}),
    # bool
    (f("consent_sms", "eq", True), {"a"}),
    (f("consent_sms", "neq", True), {"b", "c", "d"}),
    # datetime, absolute and relative
    (f("last_order_at", "in_last_days", 30), {"a"}),
    (f("last_order_at", "not_in_last_days", 30), {"b"}),
    (f("last_order_at", "gt", "2030-06-01T00:00:00Z"), {"a"}),
    (f("last_order_at", "lte", "2030-06-01T00:00:00+03:30"), {"b"}),
    (f("last_order_at", "between", ["2030-01-01T00:00:00Z", "2030-03-31T00:00:00Z"]), {"b"}),
    (f("last_order_at", "exists", False), {"c", "d"}),
    (f("next_expected_at", "in_next_days", 7), {"a"}),
    (f("next_expected_at", "in_next_days", 3), set()),
    # date, absolute and relative (today in the shop's zone)
    (f("next_birthday", "in_next_days", 7), {"a"}),
    (f("birth_date", "lt", "2000-01-01"), {"a"}),
    (f("next_birthday", "eq", "2031-01-01"), {"b"}),
    (f("next_effective_date", "in_last_days", 7), {"d"}),
    (f("next_effective_date", "not_in_last_days", 3), {"d"}),
    (f("next_effective_date", "not_in_last_days", 7), set()),
    # arrays
    (f("tags", "contains", "vip"), {"a"}),
    (f("tags", "contains", "ویژه"), {"d"}),
    (f("tags", "in", ["new", "ویژه"]), {"b", "d"}),
    (f("tags", "exists", False), {"c"}),
    (f("purchase_months", "contains", 3), {"a"}),
    (f("purchase_months", "in", [12, 4]), {"a", "b"}),
    # families
    (f("custom_fields.club", "eq", "gold-card"), {"a"}),
    (f("custom_fields.club", "starts_with", "gold"), {"a"}),
    (f("custom_fields.club", "exists", True), {"a"}),
    (f("custom_fields.club", "neq", "gold-card"), {"b", "c", "d"}),
    (f("interactions.call", "gte", 2), {"a"}),
    (f("interactions.call", "eq", 0), {"b", "c", "d"}),
    (f("interactions.call", "exists", True), {"a"}),
    # scores and tiers
    ({"rfm": ["champions", "loyal"]}, {"a"}),
    ({"clv_band": ["low"]}, {"b"}),
    ({"tier": ["gold", "silver"]}, {"a", "b"}),
    # behaviour
    ({"purchased": {"brand": "Acme"}}, {"a", "b"}),
    ({"purchased": {"brand": "Acme"}, "value": 2}, {"a"}),
    ({"purchased": {"brand": "Acme"}, "within_days": 30}, {"a", "b"}),
    ({"purchased": {"brand": "Acme"}, "within_days": 30, "value": 2}, {"a"}),
    ({"purchased": {"brand": "Acme"}, "within_days": 15, "value": 2}, set()),
    ({"purchased": {"brand": "Acme"}, "op": "eq", "value": 3}, {"a"}),  # 3 orders, 4 lines
    ({"purchased": {"brand": "Acme"}, "op": "eq", "value": 1}, {"b"}),
    ({"purchased": {"brand": "Acme"}, "op": "lte", "value": 1}, {"b", "c", "d"}),
    ({"purchased": {"brand": "Acme"}, "op": "lt", "value": 1}, {"c", "d"}),
    ({"purchased": {"brand": "Acme"}, "op": "gt", "value": 1}, {"a"}),
    ({"purchased": {}, "measure": "quantity", "value": 6}, {"a"}),
    ({"purchased": {}, "measure": "sum", "value": 600_000}, {"a"}),
    ({"purchased": {}, "measure": "sum", "op": "between", "value": [1, 60_000]}, {"b"}),
    ({"purchased": {}, "measure": "avg", "op": "between", "value": [150_000, 250_000]}, {"a"}),
    ({"purchased": {"category": "fantasy-books"}, "negate": True}, {"b", "c", "d"}),
    ({"purchased": {"tag": "series-x"}}, {"a"}),
    ({"purchased": {"sku": "hobbit", "brand": "Acme"}}, {"a"}),
    ({"purchased": {"sku": "hobbit", "brand": "Other"}}, set()),
    (
        {"purchased": {"brand": "Acme"}, "within_days": 30, "value": 2, "negate": True},
        {"b", "c", "d"},
    ),
    # nesting and negation
    (
        {
            "all": [
                {"any": [f("city", "eq", "Tehran"), f("city", "eq", "Tabriz")]},
                {"not": f("orders_count", "gt", 3)},
            ]
        },
        {"b"},
    ),
    ({"not": {"any": []}}, {"a", "b", "c", "d"}),
    ({"all": []}, {"a", "b", "c", "d"}),
    (
        {"not": f("last_order_at", "in_last_days", 30)},
        {"b", "c", "d"},
    ),  # null: not matched, negation is
    ({"not": {"not": f("tags", "contains", "vip")}}, {"a"}),
    (
        {
            "any": [
                {"rfm": ["lost"]},
                {"all": [f("tags", "contains", "ویژه"), {"not": {"tier": ["gold"]}}]},
            ]
        },
        {"b", "d"},
    ),
]


@pytest.mark.parametrize(("definition", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
async def test_operator(
    session: AsyncSession,
    world: dict[str, uuid.UUID],
    definition: dict[str, Any],
    expected: set[str],
) -> None:
    assert await matching(session, definition, world) == expected


async def test_relative_dates_follow_the_shop_time_zone(
    session: AsyncSession, world: dict[str, uuid.UUID]
) -> None:
    # NOW is 12:00 UTC on 15 June; in Pacific/Kiritimati (UTC+14) it is already the 16th.
    cond = f("next_effective_date", "in_last_days", 5)
    assert await matching(session, cond, world) == {"d"}
    assert await matching(session, cond, world, tz="Pacific/Kiritimati") == set()


async def test_bucket_is_the_documented_hash(
    session: AsyncSession, world: dict[str, uuid.UUID]
) -> None:
    salt = "spring-test"

    def bucket(cid: uuid.UUID) -> int:
        digest = hashlib.md5(f"{salt}:{cid}".encode(), usedforsecurity=False)
        return int(digest.hexdigest()[:8], 16) % 100

    for lo, hi in ((0, 49), (50, 99), (10, 30)):
        expected = {k for k, v in world.items() if lo <= bucket(v) <= hi}
        got = await matching(session, {"bucket": {"salt": salt, "from": lo, "to": hi}}, world)
        assert got == expected


async def test_segment_references_and_removed_customers(
    session: AsyncSession, world: dict[str, uuid.UUID]
) -> None:
    vip = await service.create_segment(
        session,
        key=unique("vip-"),
        name="VIP",
        description="",
        kind="dynamic",
        definition=f("tags", "contains", "vip"),
        template=None,
        author="t",
        now=NOW,
    )
    static = await service.create_segment(
        session,
        key=unique("list-"),
        name="List",
        description="",
        kind="static",
        definition=None,
        template=None,
        author="t",
        now=NOW,
    )
    await evaluation.apply_changes(
        session,
        segments_by_id={static.id: (await evaluation.active_segments(session))[static.key]},
        enter=[(static.id, world["b"])],
        leave=[],
        now=NOW,
        cause="upload",
    )
    both = {"any": [{"segment": vip.key}, {"segment": static.key}]}
    assert await matching(session, both, world) == {"a", "b"}
    assert await matching(session, {"not": {"segment": vip.key}}, world) == {"b", "c", "d"}
    # A nested dynamic reference is inlined: changing the inner definition changes the outer.
    outer = await service.create_segment(
        session,
        key=unique("outer-"),
        name="Outer",
        description="",
        kind="dynamic",
        definition={"all": [{"segment": vip.key}, f("orders_count", "gte", 1)]},
        template=None,
        author="t",
        now=NOW,
    )
    assert await matching(session, {"segment": outer.key}, world) == {"a"}
    await service.update_segment(
        session,
        segment_id=vip.id,
        name=None,
        description=None,
        definition=f("tags", "contains", "new"),
        author="t",
        now=NOW,
    )
    assert await matching(session, {"segment": outer.key}, world) == {"b"}
    # The outer segment was re-evaluated with its reference.
    rows, _ = await service.members(session, segment_id=outer.id, cursor=None, limit=10)
    assert {r.customer_id for r in rows} & set(world.values()) == {world["b"]}
    # Removed (merged or erased) customers never match anything.
    await set_features(session, world["c"], removed=True)
    assert await matching(session, f("city", "exists", False), world) == set()
    assert await matching(session, {"all": []}, world) == {"a", "b", "d"}


async def test_recheck_is_when_the_clock_changes_the_verdict(
    session: AsyncSession, world: dict[str, uuid.UUID]
) -> None:
    segments = evaluation.infos(await evaluation.active_segments(session))

    async def due(definition: dict[str, Any], who: str, tz: str = "UTC") -> Any:
        comp = compiler.compile_definition(
            L.parse(definition, segments=segments), compiler.resolver(segments)
        )
        assert comp.recheck is not None
        return await session.scalar(
            select(comp.recheck).where(F.c.customer_id == world[who]), compiler.params(NOW, tz)
        )

    # last order 10 days ago, "in the last 30 days": true until 20 days from now.
    # (Just after the inclusive bound.)
    in_window = f("last_order_at", "in_last_days", 30)
    assert await due(in_window, "a") == NOW + timedelta(days=20, seconds=1)
    # b's last order (100 days ago) is past the bound already: nothing to wait for.
    assert await due(f("last_order_at", "not_in_last_days", 30), "b") is None
    # Birthday on 20 June, "in the next 2 days": turns true at local midnight of 18 June.
    got = await due(f("next_birthday", "in_next_days", 2), "a", tz="Asia/Tehran")
    assert got.isoformat() == "2030-06-17T20:30:00+00:00"
    # Purchases within 30 days: the one 20 days ago leaves the window in 10 days.
    assert await due({"purchased": {"brand": "Acme"}, "within_days": 30}, "a") == NOW + timedelta(
        days=10
    )
    # The least of several.
    both = {"any": [in_window, {"purchased": {}, "within_days": 30}]}
    assert await due(both, "a") == NOW + timedelta(days=10)

"""Value reports on the real database: by acquisition cohort in the shop's months, by channel,
registered-only versus purchased; the query is validated."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.segmentation.scores import reports

from .scores_fixtures import add_customer, clear_scores

VIEWER = principal_headers("staff", "v", "viewer")
NOW = datetime(2026, 6, 30, 22, tzinfo=UTC)  # already 1 July in Tehran


def test_cohort_months_follow_the_shop_calendar() -> None:
    assert reports.cohort_months(NOW, 6, "UTC") == [
        "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06",
    ]  # fmt: skip
    assert reports.cohort_months(NOW, 6, "Asia/Tehran")[-1] == "2026-07"
    months = reports.cohort_months(NOW, 18, "UTC")
    assert len(months) == 18 and months[0] == "2025-01"


async def seed(session: AsyncSession) -> None:
    reg = datetime(2026, 5, 3, tzinfo=UTC)
    # 2026-05: two buyers (one with a CLV) and a registered-only member from Instagram.
    await add_customer(session, cohort="2026-05", acquisition_channel="instagram",
                       orders_count=2, total_spent=30_000, clv_value=50_000)  # fmt: skip
    await add_customer(session, cohort="2026-05", acquisition_channel="instagram",
                       orders_count=1, total_spent=10_000)  # fmt: skip
    await add_customer(session, cohort="2026-05", acquisition_channel="instagram",
                       registered_at=reg)  # fmt: skip
    # 2026-02: one buyer from the web shop; 2024-01: too old for 18 months.
    await add_customer(session, cohort="2026-02", acquisition_channel="web",
                       orders_count=5, total_spent=90_000, clv_value=20_000)  # fmt: skip
    await add_customer(session, cohort="2024-01", orders_count=1, total_spent=1_000)
    # A lead (neither registered nor bought) and a removed buyer.
    await add_customer(session, cohort="2026-05", acquisition_channel="web")
    await add_customer(session, cohort="2026-05", orders_count=9, total_spent=10**6, removed=True)


async def test_by_cohort(session: AsyncSession) -> None:
    await seed(session)
    rows = await reports.by_cohort(session, now=NOW, months=6, timezone="UTC")
    assert next(r.group for r in rows) == "2026-01" and len(rows) == 6
    may = next(r for r in rows if r.group == "2026-05")
    assert (may.customers, may.purchasers, may.revenue) == (4, 2, 40_000)
    assert may.mean_clv == pytest.approx(50_000)
    feb = next(r for r in rows if r.group == "2026-02")
    assert (feb.customers, feb.purchasers, feb.revenue, feb.mean_clv) == (1, 1, 90_000, 20_000)
    empty = next(r for r in rows if r.group == "2026-03")
    assert (empty.customers, empty.revenue, empty.mean_clv) == (0, 0, None)
    long = await reports.by_cohort(session, now=NOW, months=18, timezone="UTC")
    assert sum(r.customers for r in long) == 5


async def test_by_channel_and_registration(session: AsyncSession) -> None:
    await seed(session)
    channels = {r.group: r for r in await reports.by_channel(session)}
    assert channels["web"].revenue == 90_000 and channels["web"].customers == 2
    assert channels["instagram"].purchasers == 2
    assert channels["unknown"].revenue == 1_000
    assert next(iter(channels)) == "web"  # most revenue first
    reg = {r.group: r for r in await reports.by_registration(session)}
    assert (reg["registered_only"].customers, reg["registered_only"].revenue) == (1, 0)
    assert (reg["purchased"].customers, reg["purchased"].revenue) == (4, 131_000)


@pytest.fixture
async def clean(db: Database) -> AsyncIterator[None]:
    await clear_scores(db)
    yield
    await clear_scores(db)


async def test_api(client: httpx.AsyncClient, db: Database, clean: None) -> None:
    async with db.sessionmaker() as s:
        await seed(s)
        await s.commit()
    r = await client.get("/v1/segmentation/reports/value?by=cohort&months=6", headers=VIEWER)
    assert r.status_code == 200, r.text
    assert r.json()["months"] == 6 and len(r.json()["rows"]) == 6
    r = await client.get("/v1/segmentation/reports/value", headers=VIEWER)
    assert r.json()["by"] == "cohort" and len(r.json()["rows"]) == 12
    r = await client.get("/v1/segmentation/reports/value?by=registration", headers=VIEWER)
    assert [row["group"] for row in r.json()["rows"]] == ["registered_only", "purchased"]
    r = await client.get("/v1/segmentation/reports/value?by=channel", headers=VIEWER)
    assert r.json()["rows"][0]["group"] == "web"

    for query, pointer in (
        ("by=cohort&months=7", "/query/months"),
        ("by=channel&months=6", "/query/months"),
        ("by=tier", "/query/by"),
        ("months=six", "/query/months"),
    ):
        r = await client.get(f"/v1/segmentation/reports/value?{query}", headers=VIEWER)
        assert r.status_code == 422, query
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["pointer"] == pointer, query
    assert (await client.get("/v1/segmentation/reports/value")).status_code == 401

"""RFM on the real database: quintile scores with ties kept together, every named segment
reached, only changed rows written, removed and order-less customers unscored, the API."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.segmentation.scores import rfm

from .scores_fixtures import add_customer, clear_scores

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
MARKETER = principal_headers("staff", "m", "marketer")
VIEWER = principal_headers("staff", "v", "viewer")


async def grid_customers(session: AsyncSession) -> dict[uuid.UUID, tuple[int, int]]:
    """25 customers, one per (R level, FM level); five share each level of each dimension, so
    the levels are exactly the quintiles."""
    made = {}
    for r in range(1, 6):
        for fm in range(1, 6):
            cid = await add_customer(
                session,
                orders_count=fm * 2,
                total_spent=fm * 10_000,
                last_order_at=NOW - timedelta(days=(6 - r) * 30),
                first_order_at=NOW - timedelta(days=400),
            )
            made[cid] = (r, fm)
    return made


async def scores(session: AsyncSession) -> dict[uuid.UUID, tuple[int, int, int, str]]:
    rows = await session.execute(
        text("SELECT customer_id, rfm_r, rfm_f, rfm_m, rfm_segment FROM features")
    )
    return {r.customer_id: (r.rfm_r, r.rfm_f, r.rfm_m, r.rfm_segment) for r in rows}


def test_the_table_covers_every_cell_once_and_names_eleven_segments() -> None:
    assert len(rfm.GRID) == 25
    assert set(rfm.GRID) == set(rfm.SEGMENT_KEYS)
    assert rfm.SEGMENT_KEYS == (
        "champions",
        "loyal",
        "potential_loyalist",
        "new",
        "promising",
        "need_attention",
        "about_to_sleep",
        "cant_lose_them",
        "at_risk",
        "hibernating",
        "lost",
    )
    assert rfm.segment_for(5, rfm.fm_score(5, 4)).key == "champions"
    assert rfm.segment_for(1, rfm.fm_score(1, 2)).key == "lost"


async def test_every_named_segment_is_reached(session: AsyncSession) -> None:
    empty = await rfm.recompute_rfm(session, now=NOW)  # nobody to score: nothing breaks
    assert (empty.changed, empty.report.customers, empty.report.recency) == (0, 0, [])
    made = await grid_customers(session)
    summary = await rfm.recompute_rfm(session, now=NOW)
    assert summary.changed == 25 and summary.cleared == 0
    got = await scores(session)
    for cid, (r, fm) in made.items():
        assert got[cid][:3] == (r, fm, fm), (r, fm)
        assert got[cid][3] == rfm.segment_for(r, fm).key
    counts = {s.key: s.customers for s in summary.report.segments}
    assert set(k for k, n in counts.items() if n) == set(rfm.SEGMENT_KEYS)
    assert sum(counts.values()) == 25 == summary.report.customers
    assert counts["potential_loyalist"] == 4 and counts["loyal"] == 4 and counts["lost"] == 2
    assert sum(s.share for s in summary.report.segments) == pytest.approx(1.0)
    # Edges: score 5 of recency is the most recent 30 days; frequency levels are 2, 4 ... 10.
    assert [(e.score, e.low, e.high) for e in summary.report.frequency] == [
        (s, 2.0 * s, 2.0 * s) for s in range(1, 6)
    ]
    assert summary.report.recency[4].low == pytest.approx(30.0)
    assert summary.report.recency[0].low == pytest.approx(150.0)
    champions = next(s for s in summary.report.segments if s.key == "champions")
    assert champions.mean_recency_days == pytest.approx(30.0)
    assert champions.mean_orders == pytest.approx(9.0)
    assert champions.mean_spend == pytest.approx(45_000.0)


async def test_equal_values_get_equal_scores_and_a_big_tie_scores_where_it_starts(
    session: AsyncSession,
) -> None:
    # 6 of 10 customers bought once: all F = 1 (nobody below them), not split by ntile.
    ids = []
    for i in range(10):
        ids.append(
            await add_customer(
                session,
                orders_count=1 if i < 6 else i,
                total_spent=5_000 if i in (3, 4) else 1_000 * (i + 1),
                last_order_at=NOW - timedelta(days=10),
            )
        )
    await rfm.recompute_rfm(session, now=NOW)
    got = await scores(session)
    assert {got[c][1] for c in ids[:6]} == {1}
    assert [got[c][1] for c in ids[6:]] == [4, 4, 5, 5]
    assert got[ids[3]][2] == got[ids[4]][2]
    # Everyone bought on the same day: one recency value, every R the same (1: none lower).
    assert {got[c][0] for c in ids} == {1}


async def test_recency_is_the_day_of_the_shop(session: AsyncSession) -> None:
    # 20:00 and 23:00 UTC on 1 May: one day in UTC, two in Tehran (3:30 ahead).
    early = await add_customer(
        session, orders_count=1, total_spent=1, last_order_at=datetime(2026, 5, 1, 20, tzinfo=UTC)
    )
    late = await add_customer(
        session, orders_count=1, total_spent=1, last_order_at=datetime(2026, 5, 1, 23, tzinfo=UTC)
    )
    await rfm.recompute_rfm(session, now=NOW)
    got = await scores(session)
    assert got[early][0] == got[late][0] == 1
    await rfm.recompute_rfm(session, now=NOW, timezone="Asia/Tehran")
    got = await scores(session)
    assert (got[early][0], got[late][0]) == (1, 3)


async def test_only_changed_rows_are_written_and_the_unscored_are_cleared(
    session: AsyncSession,
) -> None:
    made = await grid_customers(session)
    lead = await add_customer(session)  # never bought: never scored
    gone = await add_customer(
        session, orders_count=50, total_spent=10**7, last_order_at=NOW, removed=True
    )
    first = await rfm.recompute_rfm(session, now=NOW)
    assert first.changed == 25
    again = await rfm.recompute_rfm(session, now=NOW + timedelta(hours=1))
    assert (again.changed, again.cleared) == (0, 0)
    got = await scores(session)
    assert got[lead] == (None, None, None, None) and got[gone] == (None, None, None, None)

    # The best customer's orders were all cancelled: they leave and, being alone at the top,
    # move nobody else. A middling customer's spend drops a level: their M alone changes.
    best = next(c for c, v in made.items() if v == (5, 5))
    middle = next(c for c, v in made.items() if v == (3, 3))
    await session.execute(
        text("UPDATE features SET orders_count = 0, total_spent = 0 WHERE customer_id = :c"),
        {"c": best},
    )
    await session.execute(
        text("UPDATE features SET total_spent = 20000 WHERE customer_id = :c"), {"c": middle}
    )
    third = await rfm.recompute_rfm(session, now=NOW)
    assert (third.changed, third.cleared) == (1, 1)
    got = await scores(session)
    assert got[best] == (None, None, None, None)
    assert got[middle] == (3, 3, 2, "need_attention")
    assert third.report.customers == 24


@pytest.fixture
async def clean(db: Database) -> AsyncIterator[None]:
    await clear_scores(db)
    yield
    await clear_scores(db)


async def test_concurrent_recomputes_serialise(db: Database, clean: None) -> None:
    async with db.sessionmaker() as s:
        await grid_customers(s)
        await s.commit()

    async def run() -> rfm.RfmSummary:
        async with db.sessionmaker() as s:
            out = await rfm.recompute_rfm(s, now=NOW)
            await s.commit()
            return out

    a, b = await asyncio.gather(run(), run())
    # The second waited for the first's commit, then found nothing to change.
    assert sorted([a.changed, b.changed]) == [0, 25]
    assert a.report.customers == b.report.customers == 25


async def test_api_recompute_and_read(client: httpx.AsyncClient, db: Database, clean: None) -> None:
    async with db.sessionmaker() as s:
        await grid_customers(s)
        await s.commit()
    r = await client.post("/v1/segmentation/rfm/recompute", headers=VIEWER)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    r = await client.post("/v1/segmentation/rfm/recompute", headers=MARKETER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changed"] == 25 and body["customers"] == 25
    assert {s["key"]: s["customers"] for s in body["segments"]}["champions"] == 2
    assert [e["score"] for e in body["edges"]["monetary"]] == [1, 2, 3, 4, 5]
    r = await client.get("/v1/segmentation/rfm", headers=VIEWER)
    assert r.status_code == 200, r.text
    read = r.json()
    assert read["customers"] == 25
    seg = {s["key"]: s for s in read["segments"]}
    assert seg["lost"]["customers"] == 2 and seg["lost"]["name"] == "Lost"
    assert seg["lost"]["mean_orders"] == pytest.approx(3.0)
    assert len(read["segments"]) == 11
    assert (await client.get("/v1/segmentation/rfm")).status_code == 401


async def test_a_recompute_moves_customers_into_rfm_segments_once(
    client: httpx.AsyncClient, db: Database, clean: None
) -> None:
    """Through the real evaluation: {"rfm": ["champions"]} gains exactly the two champions, with
    one SegmentEntered each; a recompute that changes nothing emits nothing."""
    async with db.sessionmaker() as s:
        made = await grid_customers(s)
        await s.commit()
    champions = sorted(str(c) for c, (r, fm) in made.items() if r == 5 and fm >= 4)
    r = await client.post(
        "/v1/segments",
        json={"key": f"champ-{uuid.uuid4().hex[:8]}", "name": "Champions", "definition": {
            "rfm": ["champions"]}},
        headers=MARKETER,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    segment_id = r.json()["id"]
    try:

        async def members() -> list[str]:
            async with db.sessionmaker() as s:
                rows = await s.execute(
                    text(
                        "SELECT customer_id::text FROM memberships"
                        " WHERE segment_id = :s AND exited_at IS NULL ORDER BY 1"
                    ),
                    {"s": segment_id},
                )
                return list(rows.scalars())

        async def events() -> int:
            async with db.sessionmaker() as s:
                n = await s.execute(
                    text(
                        "SELECT count(*) FROM outbox"
                        " WHERE topic = 'segmentation.memberships.v1' AND key = ANY(:k)"
                    ),
                    {"k": champions},
                )
                return int(n.scalar_one())

        assert await members() == [] and await events() == 0
        assert (
            await client.post("/v1/segmentation/rfm/recompute", headers=MARKETER)
        ).status_code == 200
        assert await members() == champions and await events() == 2
        again = await client.post("/v1/segmentation/rfm/recompute", headers=MARKETER)
        assert again.json()["changed"] == 0
        assert await members() == champions and await events() == 2
    finally:
        async with db.sessionmaker() as s:
            await s.execute(text("DELETE FROM segments WHERE id = :s"), {"s": segment_id})
            await s.commit()

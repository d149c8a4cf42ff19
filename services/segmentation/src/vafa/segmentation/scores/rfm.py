"""RFM: recency, frequency and monetary quintile scores (1-5) and the named segments.

Who is scored: customers with at least one paid order who are not removed. R ranks the day of
`last_order_at` in the shop's time zone (the most recent get 5; the same day is the same
recency), F `orders_count`, M `total_spent`. A score is
1 + floor(5 * (share of scored customers with a strictly lower value)), so equal values always
get equal scores (ntile would split a tie arbitrarily), the lowest value always scores 1, and a
value shared by many customers scores where the tie starts (60% of customers with one order all
get F = 1, not 3).

The named segment comes from R and FM = round-half-up((F + M) / 2) through SEGMENTS below: an
ordered table (first match wins) that covers every one of the 25 cells exactly once.

          FM=1            FM=2            FM=3            FM=4            FM=5
    R=5   new             potential_loy.  potential_loy.  champions       champions
    R=4   promising       potential_loy.  potential_loy.  loyal           loyal
    R=3   about_to_sleep  about_to_sleep  need_attention  loyal           loyal
    R=2   hibernating     hibernating     at_risk         at_risk         cant_lose_them
    R=1   lost            lost            at_risk         at_risk         cant_lose_them

The recompute is set-based: one statement finds the score edges, one UPDATE scores everyone
against them and writes only the rows whose scores changed; a third clears the scores of
customers no longer scored."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.segmentation.segments.evaluation import evaluate_segments

# Serialises recomputes (the periodic job and the on-demand route): two at once would only
# fight over the same rows.
RFM_LOCK = 0x5EC_0F_0001
RFM_FIELDS = frozenset({"rfm_r", "rfm_f", "rfm_m", "rfm_segment"})


async def tune_batch(session: AsyncSession) -> None:
    """For this transaction only: sorts and hashes of a million rows in memory rather than on
    disk, and no JIT (it costs about a second to compile and gains nothing on these plans)."""
    await session.execute(text("SET LOCAL work_mem = '128MB'"))
    await session.execute(text("SET LOCAL jit = off"))


@dataclass(frozen=True, slots=True)
class RfmSegment:
    key: str
    name: str
    r: tuple[int, int]  # inclusive range of R
    fm: tuple[int, int]  # inclusive range of FM
    description: str


SEGMENTS: tuple[RfmSegment, ...] = (
    RfmSegment("champions", "Champions", (5, 5), (4, 5), "bought recently, buy often, spend most"),
    RfmSegment("loyal", "Loyal", (3, 4), (4, 5), "buy often and spend much, fairly recently"),
    RfmSegment("potential_loyalist", "Potential Loyalist", (4, 5), (2, 3), "recent, average value"),
    RfmSegment("new", "New", (5, 5), (1, 1), "bought very recently, little so far"),
    RfmSegment("promising", "Promising", (4, 4), (1, 1), "recent, little value yet"),
    RfmSegment("need_attention", "Need Attention", (3, 3), (3, 3), "average on every score"),
    RfmSegment("about_to_sleep", "About to Sleep", (3, 3), (1, 2), "slipping, low value"),
    RfmSegment(
        "cant_lose_them", "Can't Lose Them", (1, 2), (5, 5), "were the best, long since gone"
    ),
    RfmSegment("at_risk", "At Risk", (1, 2), (3, 4), "bought often and much, long ago"),
    RfmSegment("hibernating", "Hibernating", (2, 2), (1, 2), "low value, long ago"),
    RfmSegment("lost", "Lost", (1, 1), (1, 2), "lowest on every score"),
)
SEGMENT_KEYS = tuple(s.key for s in SEGMENTS)


def segment_for(r: int, fm: int) -> RfmSegment:
    for seg in SEGMENTS:
        if seg.r[0] <= r <= seg.r[1] and seg.fm[0] <= fm <= seg.fm[1]:
            return seg
    raise ValueError(f"no RFM segment for R={r}, FM={fm}")


def fm_score(f: int, m: int) -> int:
    return (f + m + 1) // 2


def _grid() -> list[str]:
    """The 25 cells, index (r - 1) * 5 + (fm - 1); checks the table covers each exactly once."""
    cells = []
    for r in range(1, 6):
        for fm in range(1, 6):
            hits = [s for s in SEGMENTS if s.r[0] <= r <= s.r[1] and s.fm[0] <= fm <= s.fm[1]]
            if len(hits) != 1:
                raise AssertionError(f"RFM cell R={r} FM={fm} is matched by {len(hits)} segments")
            cells.append(hits[0].key)
    return cells


GRID = _grid()

# Statement 1, the edges: per dimension, the counts of each distinct value (a few thousand
# days, tens of order counts, some thousands of totals; one scan, grouping sets); the number of
# scored customers strictly below a value is the running count of the values under it, which
# gives each value its score; a score's edge is the lowest value that reaches it. A score is
# then 1 + the number of edges a value reaches, so statement 2 is one scan of features with no
# join, writing only the rows that changed. (rank() windows over a million rows sort each
# dimension in full and rescan big ties from disk: three times slower here.)
_EDGES_SQL = text(
    """
WITH eligible AS (
    SELECT (last_order_at AT TIME ZONE CAST(:tz AS text))::date AS d,
           orders_count AS o, total_spent AS m
    FROM features
    WHERE NOT removed AND orders_count > 0 AND last_order_at IS NOT NULL
), counted AS (
    SELECT d, o, m, count(*) AS c FROM eligible GROUP BY GROUPING SETS ((d), (o), (m))
), total AS (
    SELECT coalesce(sum(c), 0)::bigint AS n FROM counted WHERE d IS NOT NULL
), scored AS (
    SELECT d, o, m,
           1 + 5 * ((sum(c) OVER (PARTITION BY d IS NULL, o IS NULL ORDER BY d, o, m))::bigint
                    - c) / total.n AS s
    FROM counted, total
)
SELECT (SELECT n FROM total) AS n,
       min(d) FILTER (WHERE s >= 2) AS r2, min(d) FILTER (WHERE s >= 3) AS r3,
       min(d) FILTER (WHERE s >= 4) AS r4, min(d) FILTER (WHERE s >= 5) AS r5,
       min(o) FILTER (WHERE s >= 2) AS f2, min(o) FILTER (WHERE s >= 3) AS f3,
       min(o) FILTER (WHERE s >= 4) AS f4, min(o) FILTER (WHERE s >= 5) AS f5,
       min(m) FILTER (WHERE s >= 2) AS m2, min(m) FILTER (WHERE s >= 3) AS m3,
       min(m) FILTER (WHERE s >= 4) AS m4, min(m) FILTER (WHERE s >= 5) AS m5
FROM scored
"""
)


# width_bucket(value, edges) = how many edges the value reaches (edges ascending; a score no
# value reaches has no edge).
_RECOMPUTE = text(
    """
UPDATE features AS t
SET rfm_r = v.r, rfm_f = v.f, rfm_m = v.m, rfm_segment = v.segment, updated_at = :now
FROM (
    SELECT customer_id, r, f, m, (CAST(:grid AS text[]))[(r - 1) * 5 + (f + m + 1) / 2] AS segment,
           rfm_r, rfm_f, rfm_m, rfm_segment
    FROM (
        SELECT customer_id, rfm_r, rfm_f, rfm_m, rfm_segment,
               (1 + width_bucket((last_order_at AT TIME ZONE CAST(:tz AS text))::date,
                                 CAST(:r_edges AS date[])))::smallint AS r,
               (1 + width_bucket(orders_count, CAST(:f_edges AS integer[])))::smallint AS f,
               (1 + width_bucket(total_spent, CAST(:m_edges AS bigint[])))::smallint AS m
        FROM features
        WHERE NOT removed AND orders_count > 0 AND last_order_at IS NOT NULL
    ) AS x
) AS v
WHERE t.customer_id = v.customer_id
  AND (v.rfm_r, v.rfm_f, v.rfm_m, v.rfm_segment) IS DISTINCT FROM (v.r, v.f, v.m, v.segment)
"""
)


_CLEAR = text(
    "UPDATE features SET rfm_r = NULL, rfm_f = NULL, rfm_m = NULL, rfm_segment = NULL,"
    " updated_at = :now"
    " WHERE rfm_segment IS NOT NULL"
    " AND (removed OR orders_count = 0 OR last_order_at IS NULL)"
)

# One scan for the whole report: per segment (means) and per score of each dimension (the value
# range behind it), as grouping sets.
_REPORT = text(
    "WITH scored AS ("
    " SELECT rfm_segment, rfm_r, rfm_f, rfm_m, orders_count, total_spent,"
    " extract(epoch FROM (:now - last_order_at)) / 86400.0 AS recency"
    " FROM features WHERE rfm_segment IS NOT NULL AND NOT removed)"
    " SELECT rfm_segment, rfm_r, rfm_f, rfm_m, count(*) AS customers,"
    " avg(recency) AS recency_days, avg(orders_count) AS orders, avg(total_spent) AS spend,"
    " min(recency) AS min_recency, max(recency) AS max_recency,"
    " min(orders_count) AS min_orders, max(orders_count) AS max_orders,"
    " min(total_spent) AS min_spend, max(total_spent) AS max_spend"
    " FROM scored GROUP BY GROUPING SETS ((rfm_segment), (rfm_r), (rfm_f), (rfm_m))"
)


@dataclass(frozen=True, slots=True)
class SegmentStats:
    key: str
    name: str
    customers: int
    share: float
    mean_recency_days: float | None
    mean_orders: float | None
    mean_spend: float | None


@dataclass(frozen=True, slots=True)
class Edge:
    score: int
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class RfmReport:
    customers: int
    segments: list[SegmentStats]
    # Per dimension, the value range of each score: recency in days since the last order
    # (score 5 = the fewest days), frequency in orders, monetary in minor units.
    recency: list[Edge] = field(default_factory=list)
    frequency: list[Edge] = field(default_factory=list)
    monetary: list[Edge] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RfmSummary:
    computed_at: datetime
    changed: int  # rows whose scores were written
    cleared: int  # rows no longer scored (no paid order left, or removed)
    report: RfmReport


async def report(session: AsyncSession, *, now: datetime) -> RfmReport:
    result = (await session.execute(_REPORT, {"now": now})).all()
    rows = {r.rfm_segment: r for r in result if r.rfm_segment is not None}
    total = sum(int(r.customers) for r in rows.values())

    def num(v: Any) -> float | None:
        return None if v is None else float(v)

    stats = []
    for seg in SEGMENTS:
        row = rows.get(seg.key)
        n = int(row.customers) if row else 0
        stats.append(
            SegmentStats(
                key=seg.key,
                name=seg.name,
                customers=n,
                share=n / total if total else 0.0,
                mean_recency_days=num(row.recency_days) if row else None,
                mean_orders=num(row.orders) if row else None,
                mean_spend=num(row.spend) if row else None,
            )
        )
    recency: list[Edge] = []
    frequency: list[Edge] = []
    monetary: list[Edge] = []
    for e in result:
        if e.rfm_segment is not None:
            continue
        if e.rfm_r is not None:
            recency.append(Edge(int(e.rfm_r), float(e.min_recency), float(e.max_recency)))
        elif e.rfm_f is not None:
            frequency.append(Edge(int(e.rfm_f), float(e.min_orders), float(e.max_orders)))
        elif e.rfm_m is not None:
            monetary.append(Edge(int(e.rfm_m), float(e.min_spend), float(e.max_spend)))
    return RfmReport(
        customers=total,
        segments=stats,
        recency=sorted(recency, key=lambda e: e.score),
        frequency=sorted(frequency, key=lambda e: e.score),
        monetary=sorted(monetary, key=lambda e: e.score),
    )


async def recompute_rfm(
    session: AsyncSession, *, now: datetime, timezone: str = "UTC"
) -> RfmSummary:
    """Scores every customer in the caller's transaction (the caller commits); re-evaluates
    the segments that test a score when any changed."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RFM_LOCK})
    await tune_batch(session)
    e = (await session.execute(_EDGES_SQL, {"tz": timezone})).one()
    params = {
        "now": now,
        "grid": GRID,
        "tz": timezone,
        "r_edges": [v for v in (e.r2, e.r3, e.r4, e.r5) if v is not None],
        "f_edges": [v for v in (e.f2, e.f3, e.f4, e.f5) if v is not None],
        "m_edges": [v for v in (e.m2, e.m3, e.m4, e.m5) if v is not None],
    }
    changed = (await session.execute(_RECOMPUTE, params)).rowcount  # type: ignore[attr-defined]
    cleared = (await session.execute(_CLEAR, {"now": now})).rowcount  # type: ignore[attr-defined]
    if changed or cleared:
        await evaluate_segments(session, now=now, cause="evaluation", fields=RFM_FIELDS)
    return RfmSummary(
        computed_at=now,
        changed=int(changed),
        cleared=int(cleared),
        report=await report(session, now=now),
    )

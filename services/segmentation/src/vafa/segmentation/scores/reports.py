"""Value reports over the feature store: customers, purchasers, revenue and mean CLV per
acquisition-month cohort (the shop's months), per acquisition channel, and registered-only
customers versus purchasers. Removed customers are left out; revenue is `total_spent` (paid,
not cancelled, net of refunds, minor units); mean CLV is over the customers that have one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

COHORT_MONTHS = (6, 12, 18)

_BY_COHORT = text(
    "SELECT cohort AS grp,"
    " count(*) AS customers, count(*) FILTER (WHERE orders_count > 0) AS purchasers,"
    " coalesce(sum(total_spent), 0) AS revenue, avg(clv_value) AS mean_clv"
    " FROM features"
    " WHERE NOT removed AND cohort = ANY(CAST(:cohorts AS text[])) GROUP BY cohort"
)
_BY_CHANNEL = text(
    "SELECT acquisition_channel AS grp,"
    " count(*) AS customers, count(*) FILTER (WHERE orders_count > 0) AS purchasers,"
    " coalesce(sum(total_spent), 0) AS revenue, avg(clv_value) AS mean_clv"
    " FROM features"
    " WHERE NOT removed GROUP BY acquisition_channel ORDER BY revenue DESC, grp"
)
_BY_REGISTRATION = text(
    "SELECT CASE WHEN orders_count > 0 THEN 'purchased' ELSE 'registered_only' END AS grp,"
    " count(*) AS customers, count(*) FILTER (WHERE orders_count > 0) AS purchasers,"
    " coalesce(sum(total_spent), 0) AS revenue, avg(clv_value) AS mean_clv"
    " FROM features"
    " WHERE NOT removed AND (orders_count > 0 OR registered_at IS NOT NULL) GROUP BY 1"
)


@dataclass(frozen=True, slots=True)
class ValueRow:
    group: str
    customers: int
    purchasers: int
    revenue: int
    mean_clv: float | None


def _row(group: str, r: Any | None) -> ValueRow:
    if r is None:
        return ValueRow(group, 0, 0, 0, None)
    return ValueRow(
        group,
        int(r.customers),
        int(r.purchasers),
        int(r.revenue),
        None if r.mean_clv is None else float(r.mean_clv),
    )


def cohort_months(now: datetime, months: int, timezone: str) -> list[str]:
    """The last `months` months of the shop's calendar, oldest first, this month included."""
    local = now.astimezone(ZoneInfo(timezone))
    index = local.year * 12 + local.month - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - months + 1, index + 1)]


async def by_cohort(
    session: AsyncSession, *, now: datetime, months: int, timezone: str
) -> list[ValueRow]:
    cohorts = cohort_months(now, months, timezone)
    rows = {r.grp: r for r in await session.execute(_BY_COHORT, {"cohorts": cohorts})}
    return [_row(c, rows.get(c)) for c in cohorts]


async def by_channel(session: AsyncSession) -> list[ValueRow]:
    return [_row(r.grp or "unknown", r) for r in await session.execute(_BY_CHANNEL)]


async def by_registration(session: AsyncSession) -> list[ValueRow]:
    rows = {r.grp: r for r in await session.execute(_BY_REGISTRATION)}
    return [_row(g, rows.get(g)) for g in ("registered_only", "purchased")]

"""The window job: time-based features change with no event (an order leaves the 30/90/365-day
window, a birthday or an effective date passes) and segments can turn by the clock alone
(`rechecks`). Every run takes the customers due by `now`, a batch per transaction (locked with
SKIP LOCKED, so two workers share the work rather than repeat it), recomputes their features
and re-evaluates their segments with cause "window"."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vafa.kit.db import generic_plans
from vafa.kit.worker import Periodic, WorkerContext
from vafa.segmentation.config import Settings
from vafa.segmentation.features import dates
from vafa.segmentation.features.service import recompute
from vafa.segmentation.segments import evaluation

log = structlog.get_logger(__name__)

_DUE_WINDOWS = text(
    "SELECT customer_id FROM features WHERE next_window_at <= :now "
    "ORDER BY next_window_at LIMIT :limit FOR UPDATE SKIP LOCKED"
)
# The job locks feature rows only, and only those no one else holds (SKIP LOCKED): a consumer
# writing a customer's row at the same moment is never waited for (nor waits for the job in a
# cycle); that customer stays due for the next run.
_DUE_RECHECKS = text(
    "SELECT f.customer_id FROM rechecks r JOIN features f ON f.customer_id = r.customer_id "
    "WHERE r.due_at <= :now ORDER BY r.due_at LIMIT :limit FOR UPDATE OF f SKIP LOCKED"
)
# Taken off before re-evaluating: the evaluation writes a fresh one when a segment will turn
# by the clock again, so a due recheck never comes back as the same row.
_DONE_RECHECKS = text(
    "DELETE FROM rechecks WHERE customer_id = ANY(CAST(:ids AS uuid[])) AND due_at <= :now"
)
_PASSED_DATES = text(
    "SELECT customer_id, birth_date, effective_dates FROM features "
    "WHERE customer_id = ANY(CAST(:ids AS uuid[])) "
    "AND (next_birthday < :today OR next_effective_date < :today)"
)
_ROLL_DATES = text(
    "UPDATE features f SET next_birthday = v.next_birthday, "
    "next_effective_date = v.next_effective_date, updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:births AS date[]), CAST(:dates AS date[])) "
    "AS v(customer_id, next_birthday, next_effective_date) "
    "WHERE f.customer_id = v.customer_id"
)


async def _roll_dates(
    session: AsyncSession, ids: list[uuid.UUID], *, now: datetime, timezone: str, calendar: str
) -> None:
    """Moves passed birthdays and effective dates to their next occurrence."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    rows = (await session.execute(_PASSED_DATES, {"ids": ids, "today": today})).all()
    if not rows:
        return
    effective = [
        r.effective_dates if isinstance(r.effective_dates, list) else json.loads(r.effective_dates)
        for r in rows
    ]
    await session.execute(
        _ROLL_DATES,
        {
            "ids": [r.customer_id for r in rows],
            "births": [
                dates.next_birthday(r.birth_date, calendar=calendar, today=today) for r in rows
            ],
            "dates": [dates.next_effective_date(e, today=today) for e in effective],
        },
    )


async def run_windows_batch(
    session: AsyncSession,
    *,
    now: datetime,
    timezone: str,
    calendar: str = "gregorian",
    batch_size: int = 500,
) -> list[uuid.UUID]:
    """One batch in the caller's transaction: returns the customers it handled (none: done)."""
    await generic_plans(session)
    params = {"now": now, "limit": batch_size}
    due = list((await session.execute(_DUE_WINDOWS, params)).scalars())
    due += [
        cid for cid in (await session.execute(_DUE_RECHECKS, params)).scalars() if cid not in due
    ]
    if not due:
        return []
    await session.execute(_DONE_RECHECKS, {"ids": due, "now": now})
    await _roll_dates(session, due, now=now, timezone=timezone, calendar=calendar)
    await recompute(session, customer_ids=due, now=now, timezone=timezone)
    # All of them, changed or not: a recheck is due precisely because a verdict turns by the
    # clock while the features stay the same.
    await evaluation.reevaluate_customers(session, customer_ids=due, now=now, cause="window")
    return due


async def run_windows(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    timezone: str,
    calendar: str = "gregorian",
    batch_size: int = 500,
) -> int:
    """Works through everything due by `now`, a batch per transaction; returns how many
    customers it handled."""
    total = 0
    seen: set[uuid.UUID] = set()
    while True:
        async with sessionmaker() as session, session.begin():
            done = await run_windows_batch(
                session, now=now, timezone=timezone, calendar=calendar, batch_size=batch_size
            )
        total += len(done)
        # A customer due again within one run (a recheck written due by `now`) waits for the
        # next run rather than spinning this one.
        if len(done) < batch_size or seen.issuperset(done):
            break
        seen.update(done)
    if total:
        log.info("feature_windows_done", customers=total)
    return total


def periodic(settings: Settings) -> list[Periodic]:
    async def windows(ctx: WorkerContext) -> None:
        await run_windows(
            ctx.db.sessionmaker,
            now=datetime.now(UTC),
            timezone=settings.timezone,
            calendar=settings.calendar,
            batch_size=settings.windows_batch_size,
        )

    return [Periodic("segmentation.windows", settings.windows_every_seconds, windows)]

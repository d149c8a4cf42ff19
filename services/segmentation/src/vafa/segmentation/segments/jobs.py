"""Rechecks: customers whose verdict in some segment changes by the clock alone (see
compiler.Compiled.recheck) are re-evaluated when their moment comes, with cause "window".
The features helper's window job may call `run_due_rechecks` beside its own feature windows;
it is also exposed as a periodic job."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vafa.kit.worker import Periodic, WorkerContext
from vafa.segmentation.config import Settings
from vafa.segmentation.segments.evaluation import reevaluate_customers

# SKIP LOCKED: several workers share the due rows without waiting on each other.
_DUE = text(
    "SELECT customer_id FROM rechecks WHERE due_at <= :now "
    "ORDER BY due_at LIMIT :limit FOR UPDATE SKIP LOCKED"
)


async def due_rechecks(session: AsyncSession, *, now: datetime, limit: int = 500) -> int:
    """Re-evaluates up to `limit` customers whose recheck is due, in the caller's transaction
    (their rechecks rows are recomputed or deleted). Returns how many."""
    ids = list((await session.execute(_DUE, {"now": now, "limit": limit})).scalars())
    if ids:
        await reevaluate_customers(session, customer_ids=ids, now=now, cause="window")
    return len(ids)


async def run_due_rechecks(
    sessionmaker: async_sessionmaker[AsyncSession], *, batch: int = 500, now: datetime | None = None
) -> int:
    """Every due recheck, one transaction per batch. Returns how many customers."""
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            n = await due_rechecks(session, now=now or datetime.now(UTC), limit=batch)
        total += n
        if n < batch:
            return total


def periodic(settings: Settings) -> list[Periodic]:
    """The rechecks job (none when recheck_every_seconds is 0)."""
    if not settings.recheck_every_seconds:
        return []

    async def rechecks(ctx: WorkerContext) -> None:
        await run_due_rechecks(ctx.db.sessionmaker)

    return [Periodic("segmentation.rechecks", settings.recheck_every_seconds, rechecks)]

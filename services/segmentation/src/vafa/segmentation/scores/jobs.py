"""The worker's periodic score jobs: RFM (hourly by default) and the CLV fit (daily). Each is
one transaction; a fit refused for too little history is logged, not retried."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vafa.kit.errors import Problem
from vafa.kit.worker import Periodic, WorkerContext
from vafa.segmentation.config import Settings
from vafa.segmentation.scores import rfm
from vafa.segmentation.scores.clv import service as clv_service

log = structlog.get_logger(__name__)


async def run_rfm(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    timezone: str = "UTC",
    now: datetime | None = None,
) -> rfm.RfmSummary:
    async with sessionmaker() as session:
        summary = await rfm.recompute_rfm(session, now=now or datetime.now(UTC), timezone=timezone)
        await session.commit()
    log.info(
        "rfm_recomputed",
        customers=summary.report.customers,
        changed=summary.changed,
        cleared=summary.cleared,
    )
    return summary


async def run_clv(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    policy: clv_service.ClvPolicy,
    now: datetime | None = None,
) -> int | None:
    """The new model's id, or None when there was too little history to fit."""
    async with sessionmaker() as session:
        try:
            model = await clv_service.fit_clv(session, now=now or datetime.now(UTC), policy=policy)
        except Problem as exc:
            if exc.status != 409:
                raise
            log.info("clv_not_fitted", reason=exc.detail)
            return None
        await session.commit()
    log.info("clv_fitted", model=model.id, customers=model.customers, **model.params["bgnbd"])
    return model.id


def periodic(settings: Settings) -> list[Periodic]:
    policy = clv_service.ClvPolicy.of(settings)

    async def rfm_job(ctx: WorkerContext) -> None:
        await run_rfm(ctx.db.sessionmaker, timezone=settings.timezone)

    async def clv_job(ctx: WorkerContext) -> None:
        await run_clv(ctx.db.sessionmaker, policy=policy)

    jobs = []
    if settings.rfm_every_seconds:
        jobs.append(Periodic("segmentation.rfm", settings.rfm_every_seconds, rfm_job))
    if settings.clv_every_seconds:
        jobs.append(Periodic("segmentation.clv", settings.clv_every_seconds, clv_job))
    return jobs

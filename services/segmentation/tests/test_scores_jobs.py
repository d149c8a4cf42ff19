"""The periodic score jobs: scheduled from the settings, each one transaction that commits,
a CLV fit with too little history logged and skipped."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from vafa.kit.cli import ServiceSpec
from vafa.kit.db import Database
from vafa.kit.settings import KafkaSettings
from vafa.kit.testing.plugin import settings_for
from vafa.segmentation.config import Settings
from vafa.segmentation.scores import jobs
from vafa.segmentation.scores.clv.service import ClvPolicy

from .scores_fixtures import add_customer, add_order, clear_scores

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_jobs_follow_the_settings(
    service_spec: ServiceSpec, database_url: str, kafka: KafkaSettings
) -> None:
    s = settings_for(service_spec, database_url, kafka)
    assert isinstance(s, Settings)
    assert [(p.name, p.every) for p in jobs.periodic(s)] == [
        ("segmentation.rfm", 3600),
        ("segmentation.clv", 86_400),
    ]
    off = settings_for(service_spec, database_url, kafka, rfm_every_seconds=0)
    assert isinstance(off, Settings)
    assert [p.name for p in jobs.periodic(off)] == ["segmentation.clv"]
    with pytest.raises(ValueError, match="clv_low_percentile"):
        Settings(clv_low_percentile=90, clv_high_percentile=80)


@pytest.fixture
async def clean(db: Database) -> AsyncIterator[None]:
    await clear_scores(db)
    yield
    await clear_scores(db)


async def test_jobs_write_and_commit(db: Database, clean: None) -> None:
    assert await jobs.run_clv(db.sessionmaker, policy=ClvPolicy(), now=NOW) is None
    async with db.sessionmaker() as s:
        for i in range(30):
            c = await add_customer(
                s, orders_count=1 + i % 4, total_spent=1000 * (i + 1), last_order_at=NOW
            )
            for k in range(1 + i % 4):
                await add_order(s, c, NOW - timedelta(days=10 + 40 * k + i), 1000 + 10 * i)
        await s.commit()
    summary = await jobs.run_rfm(db.sessionmaker, now=NOW)
    assert summary.changed == 30
    model_id = await jobs.run_clv(db.sessionmaker, policy=ClvPolicy(), now=NOW)
    assert model_id is not None
    async with db.sessionmaker() as s:
        row = (
            await s.execute(
                text(
                    "SELECT count(rfm_segment) AS rfm, count(clv_band) AS clv,"
                    " (SELECT count(*) FROM clv_models) AS models FROM features"
                )
            )
        ).one()
    assert (row.rfm, row.clv, row.models) == (30, 30, 1)

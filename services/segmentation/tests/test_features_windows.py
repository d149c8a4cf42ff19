"""The window job: time moves features with no event. Runs against the real database in its
own committed transactions (as the worker runs it), so each test uses its own customers and
cleans up after itself."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.cli import ServiceSpec
from vafa.kit.db import Database
from vafa.kit.settings import KafkaSettings
from vafa.kit.testing.plugin import settings_for
from vafa.kit.testing.poll import eventually
from vafa.segmentation.config import Settings
from vafa.segmentation.features import jobs
from vafa.segmentation.features.handlers import customers_handler, purchases_handler

from .features_fixtures import (
    NOW,
    Reevaluations,
    features,
    order,
    purchase,
    reevaluations,
    registered,
)

__all__ = ["reevaluations"]

SETTINGS = Settings()
PURCHASES = purchases_handler(SETTINGS, clock=lambda: NOW)
CUSTOMERS = customers_handler(SETTINGS, clock=lambda: NOW)


@pytest.fixture
async def clean(db: Database) -> AsyncIterator[None]:
    """These tests commit and the job takes whatever is due in the database: they start from
    empty feature tables and leave them empty."""

    async def wipe() -> None:
        async with db.sessionmaker() as s, s.begin():
            for table in ("orders", "purchase_lines", "features", "identities", "rechecks"):
                await s.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names

    await wipe()
    yield
    await wipe()


async def committed(db: Database, fn: object, events: list[object]) -> None:
    async with db.sessionmaker() as s, s.begin():
        await fn(s, events)  # type: ignore[operator]


async def read(db: Database, customer: uuid.UUID) -> dict[str, object]:
    async with db.sessionmaker() as s:
        return await features(s, customer)


async def run(db: Database, now: datetime, batch_size: int = 500) -> int:
    return await jobs.run_windows(
        db.sessionmaker, now=now, timezone="UTC", calendar="gregorian", batch_size=batch_size
    )


async def test_an_order_leaves_the_30_day_window_with_no_new_event(
    db: Database, clean: None, reevaluations: Reevaluations
) -> None:
    c, quiet = uuid.uuid4(), uuid.uuid4()
    placed = NOW - timedelta(days=29)
    await committed(db, PURCHASES, [purchase(c, "paid", order("w:1", 4000, placed_at=placed))])
    await committed(db, CUSTOMERS, [registered(quiet)])
    f = await read(db, c)
    assert (f["orders_30d"], f["spent_30d"], f["orders_90d"]) == (1, 4000, 1)
    assert f["next_window_at"] == placed + timedelta(days=30)
    reevaluations.clear()

    # Not due yet: nothing happens.
    assert await run(db, NOW) == 0
    assert reevaluations.calls == []

    # Two days later the order is 31 days old.
    later = NOW + timedelta(days=2)
    assert await run(db, later) == 1
    f = await read(db, c)
    assert (f["orders_30d"], f["spent_30d"]) == (0, 0)
    assert (f["orders_90d"], f["spent_90d"], f["orders_count"]) == (1, 4000, 1)
    assert f["next_window_at"] == placed + timedelta(days=90)
    assert reevaluations.calls == [(frozenset({c}), "window", later)]

    # Run again at the same moment: nothing left to do.
    reevaluations.clear()
    assert await run(db, later) == 0
    assert reevaluations.calls == []

    # A year and a day on, every window is empty and nothing is due any more.
    assert await run(db, placed + timedelta(days=366)) == 1
    f = await read(db, c)
    assert (f["orders_365d"], f["orders_count"], f["next_window_at"]) == (0, 1, None)


async def test_due_rechecks_are_re_evaluated_and_taken_off(
    db: Database, clean: None, reevaluations: Reevaluations
) -> None:
    c = uuid.uuid4()
    await committed(db, CUSTOMERS, [registered(c)])
    async with db.sessionmaker() as s, s.begin():
        await s.execute(
            text("INSERT INTO rechecks (customer_id, due_at) VALUES (:c, :at)"),
            {"c": c, "at": NOW + timedelta(hours=1)},
        )
    reevaluations.clear()
    assert await run(db, NOW) == 0
    assert await run(db, NOW + timedelta(hours=1)) == 1
    assert reevaluations.calls == [(frozenset({c}), "window", NOW + timedelta(hours=1))]
    async with db.sessionmaker() as s:
        left = (await s.execute(text("SELECT count(*) FROM rechecks"))).scalar_one()
    assert left == 0


async def test_a_passed_birthday_rolls_to_next_year(db: Database, clean: None) -> None:
    c = uuid.uuid4()
    anniversary = profile_pb2.EffectiveDate(
        date_id="a", kind="wedding_anniversary", calendar="gregorian", month=7, day=1
    )
    await committed(
        db, CUSTOMERS, [registered(c, birth_date="1990-06-20", effective_dates=[anniversary])]
    )
    f = await read(db, c)
    assert (f["next_birthday"], f["next_effective_date"]) == (date(2026, 6, 20), date(2026, 7, 1))
    assert f["next_window_at"] == datetime(2026, 6, 21, tzinfo=UTC)

    assert await run(db, datetime(2026, 6, 21, 0, 5, tzinfo=UTC)) == 1
    f = await read(db, c)
    assert (f["next_birthday"], f["next_effective_date"]) == (date(2027, 6, 20), date(2026, 7, 1))
    assert f["next_window_at"] == datetime(2026, 7, 2, tzinfo=UTC)

    assert await run(db, datetime(2026, 7, 2, 0, 0, tzinfo=UTC)) == 1
    f = await read(db, c)
    assert (f["next_birthday"], f["next_effective_date"]) == (date(2027, 6, 20), date(2027, 7, 1))
    assert f["next_window_at"] == datetime(2027, 6, 21, tzinfo=UTC)


async def test_batches_and_concurrent_runs_share_the_work(
    db: Database, clean: None, reevaluations: Reevaluations
) -> None:
    customers = [uuid.uuid4() for _ in range(7)]
    await committed(
        db,
        PURCHASES,
        [
            purchase(c, "paid", order(f"wb:{n}", 100, placed_at=NOW - timedelta(days=29)))
            for n, c in enumerate(customers)
        ],
    )
    reevaluations.clear()
    later = NOW + timedelta(days=1)
    # Two workers at once, batches of 2: each customer is handled exactly once.
    done = await asyncio.gather(run(db, later, batch_size=2), run(db, later, batch_size=2))
    assert sum(done) == len(customers)
    seen = [c for ids, _, _ in reevaluations.calls for c in ids]
    assert sorted(seen) == sorted(customers)
    for c in customers:
        assert (await read(db, c))["orders_30d"] == 0


async def test_window_batch_in_a_session(session: AsyncSession) -> None:
    """The batch function itself, inside a rolled-back test session."""
    c = uuid.uuid4()
    await PURCHASES(session, [purchase(c, "paid", order("ws:1", 100, placed_at=NOW))])
    done = await jobs.run_windows_batch(
        session, now=NOW + timedelta(days=31), timezone="UTC", batch_size=10
    )
    assert done == [c]
    assert (await features(session, c))["orders_30d"] == 0


async def test_the_worker_runs_the_window_job(
    service_spec: ServiceSpec, db: Database, kafka: KafkaSettings, clean: None
) -> None:
    """The job wired into the worker, on the real clock: a row left with a stale 30-day count
    and a passed window moment is recomputed within a few runs."""
    c = uuid.uuid4()
    placed = datetime.now(UTC) - timedelta(days=40)
    async with db.sessionmaker() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO orders (order_ref, customer_id, status, placed_at, paid_at, "
                "currency, total_minor) VALUES ('wk:1', :c, 'paid', :at, :at, 'USD', 700)"
            ),
            {"c": c, "at": placed},
        )
        await s.execute(
            text(
                "INSERT INTO features (customer_id, orders_count, orders_30d, spent_30d, "
                "next_window_at) VALUES (:c, 1, 1, 700, now() - interval '1 minute')"
            ),
            {"c": c},
        )
    settings = settings_for(service_spec, db.url, kafka, windows_every_seconds=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(service_spec.worker(settings, stop))
    try:

        async def recomputed() -> dict[str, object] | None:
            f = await read(db, c)
            return f if f["orders_30d"] == 0 else None

        f = await eventually(recomputed, within=30, what="the window job's recompute")
        assert f["spent_30d"] == 0 and f["orders_90d"] == 1
        assert f["next_window_at"] == placed + timedelta(days=90)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

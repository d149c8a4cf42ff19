"""pytest plugin: every service's tests get the real PostgreSQL and the real Kafka broker.

A service's conftest provides one fixture, `service_spec` (its `ServiceSpec`); the plugin then
hands out:
- `database_url`: a fresh database `test_<service>_<xdist worker><$VAFA_TEST_DB_SUFFIX>`
  migrated to head (once per run);
- `db`: a `Database` on it; `session`: a session inside a transaction rolled back after the test;
- `kafka`: `KafkaSettings` with a topic prefix unique to this run, topics created;
- `settings`: the service's settings pointed at both; `client`: an httpx client on the app;
- `worker`: starts the service's worker in the background for the test, stops it after.

Nothing is mocked and nothing skips: when a server is missing the run fails, saying how to
start it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.cli import ServiceSpec
from vafa.kit.db import Database
from vafa.kit.kafka import check_kafka, delete_topics, ensure_topics
from vafa.kit.migrations import upgrade
from vafa.kit.settings import PG_DEFAULT, KafkaSettings, ServiceSettings

HOW_TO_START = "Start the local infrastructure with `make infra` (deploy/local/infra.sh up)."


def _admin_dsn() -> str:
    base = os.environ.get("VAFA_TEST_PG", PG_DEFAULT)
    return base.replace("postgresql+asyncpg://", "postgresql://", 1) + "/postgres"


async def recreate_database(name: str) -> str:
    dsn = _admin_dsn()
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {dsn}: {exc!r}. {HOW_TO_START}", pytrace=False)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
async def kafka(run_id: str) -> AsyncIterator[KafkaSettings]:
    """The broker, with this run's own topics (prefix `test-<run>-`), deleted afterwards so
    runs do not pile thousands of partitions onto a developer's broker."""
    settings = KafkaSettings(topic_prefix=f"test-{run_id}-")
    try:
        await check_kafka(settings, timeout=5)
    except Exception as exc:
        pytest.fail(
            f"Kafka is not reachable at {settings.bootstrap_servers}: {exc!r}. {HOW_TO_START}",
            pytrace=False,
        )
    await ensure_topics(settings)
    yield settings
    await delete_topics(settings, prefix=settings.topic_prefix)


@pytest.fixture(scope="session")
async def _databases() -> AsyncIterator[dict[str, Database]]:
    """One migrated database per service per run, shared by that service's tests. Keyed by
    service rather than session-scoped per fixture, so one pytest run can cover every service
    (each service's conftest overrides `service_spec`)."""
    cache: dict[str, Database] = {}
    yield cache
    for database in cache.values():
        await database.dispose()


@pytest.fixture
async def db(service_spec: ServiceSpec, _databases: dict[str, Database]) -> Database:
    if service_spec.name not in _databases:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        # Two checkouts testing the same service at once (git worktrees) set a suffix each, so
        # neither drops the other's database mid-run.
        suffix = os.environ.get("VAFA_TEST_DB_SUFFIX", "")
        url = await recreate_database(f"test_{service_spec.name}_{worker}{suffix}")
        await asyncio.to_thread(upgrade, service_spec.service_dir, url)
        _databases[service_spec.name] = Database(url, pool_size=5)
    return _databases[service_spec.name]


# What the `settings` fixture sets as VAFA_INTERNAL_TOKEN and `principal_headers` presents.
TEST_INTERNAL_TOKEN = "test-internal-token"


@pytest.fixture
def database_url(db: Database) -> str:
    return db.url


def settings_for(
    service_spec: ServiceSpec, database_url: str, kafka: KafkaSettings, **overrides: object
) -> ServiceSettings:
    """The test run's settings for a service, with `overrides` (a test module that needs other
    limits overrides the `settings` fixture with this, keeping the database, broker and token)."""
    values: dict[str, object] = {
        "database_url": database_url,
        "kafka": kafka,
        "log_json": False,
        "worker_metrics_port": 0,
        "VAFA_INTERNAL_TOKEN": TEST_INTERNAL_TOKEN,
    }
    return service_spec.settings(**{**values, **overrides})


@pytest.fixture
def settings(service_spec: ServiceSpec, database_url: str, kafka: KafkaSettings) -> ServiceSettings:
    return settings_for(service_spec, database_url, kafka)


@pytest.fixture
async def session(db: Database) -> AsyncIterator[AsyncSession]:
    """A session whose commits become savepoints inside one outer transaction that is rolled
    back after the test, so every test starts from the migrated, empty database."""
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        s = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield s
        finally:
            await s.close()
            await outer.rollback()


@pytest.fixture
async def client(
    service_spec: ServiceSpec, settings: ServiceSettings
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the service's app (lifespan run), talking to the test database."""
    module, _, factory = service_spec.app_factory.partition(":")
    create_app = getattr(__import__(module, fromlist=[factory]), factory)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


@pytest.fixture
async def worker(
    service_spec: ServiceSpec, settings: ServiceSettings
) -> AsyncIterator[asyncio.Event]:
    """Runs the service's worker (outbox relay, consumers) for the duration of a test."""
    stop = asyncio.Event()
    task = asyncio.create_task(service_spec.worker(settings, stop))
    yield stop
    stop.set()
    await asyncio.wait_for(task, 30)


def principal_headers(
    kind: str = "staff", ident: str = "tester", roles: str = "admin"
) -> dict[str, str]:
    """Identity headers as the gateway sends them, proven with the test run's internal token."""
    return {
        "x-vafa-principal": f"{kind}:{ident}",
        "x-vafa-roles": roles,
        "x-vafa-internal-token": TEST_INTERNAL_TOKEN,
    }

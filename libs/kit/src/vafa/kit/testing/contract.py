"""What every service must do, as tests each service inherits:

    # services/<name>/tests/test_contract.py
    from vafa.kit.testing.contract import ServiceContract

    class TestContract(ServiceContract):
        pass

They run against the service's real app, migrated database and worker (the plugin's fixtures).
"""

from __future__ import annotations

import asyncio
import importlib

import httpx
from aiokafka import AIOKafkaConsumer
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from vafa.events.v1 import inventory_pb2
from vafa.kit import cloudevents
from vafa.kit.cli import ServiceSpec
from vafa.kit.db import Database
from vafa.kit.outbox import Outbox
from vafa.kit.settings import ServiceSettings


class ServiceContract:
    async def test_ready_on_its_migrated_database(
        self, client: httpx.AsyncClient, db: Database
    ) -> None:
        r = await client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == {"database": "ok", "kafka": "ok"}
        assert (await client.get("/healthz")).json()["status"] == "ok"
        async with db.sessionmaker() as s:
            rows = await s.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )
            tables = set(rows.scalars())
        assert {"outbox", "inbox", "alembic_version"} <= tables

    async def test_migrations_match_the_models(
        self, service_spec: ServiceSpec, db: Database
    ) -> None:
        """What alembic autogenerate would still want to change after `upgrade head`: nothing."""
        models = importlib.import_module(f"vafa.{service_spec.name}.models")
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), models.Base.metadata)
            )
        assert diff == []

    async def test_metrics_are_exposed(self, client: httpx.AsyncClient) -> None:
        await client.get("/healthz")
        body = (await client.get("/metrics")).text
        assert "vafa_http_requests_total" in body

    async def test_unknown_route_is_a_problem(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/no-such-route-anywhere")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 404

    async def test_public_routes_are_versioned_and_errors_are_problem_json(
        self, client: httpx.AsyncClient
    ) -> None:
        doc = (await client.get("/openapi.json")).json()
        for path, item in doc["paths"].items():
            assert path.startswith("/v1/"), f"{path} is not under /v1"
            for method, op in item.items():
                content = op["responses"]["4XX"]["content"]
                assert list(content) == ["application/problem+json"], (method, path)

    async def test_worker_relays_the_outbox(
        self,
        service_spec: ServiceSpec,
        settings: ServiceSettings,
        db: Database,
        worker: asyncio.Event,
    ) -> None:
        probe = inventory_pb2.StockChanged(sku=f"relay-probe-{service_spec.name}", on_hand=1)
        async with db.sessionmaker() as s:
            outbox = Outbox(source=f"/vafa/{service_spec.name}")
            event_id = await outbox.add(
                s, topic="inventory.catalog.v1", key="relay-probe", message=probe
            )
            await s.commit()
        consumer = AIOKafkaConsumer(
            settings.kafka.topic("inventory.catalog.v1"),
            bootstrap_servers=settings.kafka.bootstrap_servers,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            async with asyncio.timeout(20):
                while True:
                    record = await consumer.getone()
                    env = cloudevents.decode(record.headers, record.value)
                    if env.id == event_id:
                        break
        finally:
            await consumer.stop()
        assert env.source == f"/vafa/{service_spec.name}" and env.message == probe

"""Gateway tests: the real app (lifespan run) over httpx.ASGITransport, the real Kafka broker
(kit's `kafka` fixture: a topic prefix unique to this run), and small real FastAPI services
served by uvicorn on local ports for the proxy, auth and OpenAPI tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter, FastAPI, Request, Response

from vafa.gateway.app import create_app
from vafa.gateway.config import GatewaySettings
from vafa.kit import cloudevents
from vafa.kit.errors import PROBLEM_RESPONSES, install_problem_handlers
from vafa.kit.settings import KafkaSettings

# The kit's pytest plugin (its `kafka` fixture) is enabled by the repository's root conftest.py;
# naming it here too would break a run from the root (pytest_plugins in a non-root conftest).

FIXTURES = (Path(__file__).parents[2] / "../shared/fixtures/webhooks").resolve()


@dataclass(frozen=True)
class Secrets:
    shopify: str = "shpss_test_secret"
    woocommerce: str = "woo-test-secret"
    standard: str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    admin_key: str = "vafa-admin-key-for-tests"
    shop_key: str = "vafa-shop-key-for-tests"
    viewer_key: str = "vafa-viewer-key-for-tests"
    jwt: str = "jwt-secret-for-tests-at-least-32-bytes!"
    internal_token: str = "internal-token-for-tests"


SECRETS = Secrets()


@pytest.fixture(scope="session")
def secrets() -> Secrets:
    return SECRETS


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The real platform payloads (see SOURCES.md there). Missing is a failure, not a skip."""
    if not FIXTURES.is_dir():
        pytest.fail(f"the webhook fixtures are missing: {FIXTURES} does not exist", pytrace=False)
    return FIXTURES


@pytest.fixture(scope="session")
def fixture_bytes(fixture_dir: Path) -> Callable[[str], bytes]:
    def load(name: str) -> bytes:
        path = fixture_dir / name
        if not path.is_file():
            pytest.fail(f"the webhook fixture {path} is missing", pytrace=False)
        return path.read_bytes()

    return load


# --- the orders topic, read for real ------------------------------------------------------------


@dataclass
class Record:
    key: str
    headers: dict[str, str]
    envelope: cloudevents.Envelope


class TopicReader:
    """Reads what was appended to a topic since a mark (end offsets)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self.bootstrap_servers = kafka.bootstrap_servers
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False, group_id=None
        )
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            [described] = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        parts = [p["partition"] for p in described.get("partitions", [])]
        assert parts, f"topic {self.topic} does not exist: {described}"
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(parts)]
        await self.consumer.start()
        self.consumer.assign(self.partitions)

    async def mark(self) -> dict[TopicPartition, int]:
        return dict(await self.consumer.end_offsets(self.partitions))

    async def since(self, mark: dict[TopicPartition, int]) -> list[Record]:
        end = await self.consumer.end_offsets(self.partitions)
        out: list[Record] = []
        for tp in self.partitions:
            if end[tp] <= mark[tp]:
                continue
            self.consumer.seek(tp, mark[tp])
            while await self.consumer.position(tp) < end[tp]:
                batch = await self.consumer.getmany(tp, timeout_ms=2000)
                for msg in batch.get(tp, []):
                    if msg.offset >= end[tp]:
                        break
                    headers = {k: v.decode() for k, v in msg.headers}
                    out.append(
                        Record(
                            key=(msg.key or b"").decode(),
                            headers=headers,
                            envelope=cloudevents.decode(msg.headers, msg.value),
                        )
                    )
        return out

    async def stop(self) -> None:
        await self.consumer.stop()


@pytest.fixture(scope="session")
async def orders(kafka: KafkaSettings) -> AsyncIterator[TopicReader]:
    reader = TopicReader(kafka, kafka.topic("shop.orders.v1"))
    await reader.start()
    yield reader
    await reader.stop()


# --- small real services ------------------------------------------------------------------------


async def _echo(service: str, request: Request) -> dict[str, Any]:
    return {
        "service": service,
        "method": request.method,
        "path": request.url.path,
        "raw_path": request.scope["raw_path"].decode(),
        "query": request.url.query,
        "body": (await request.body()).decode(),
        "headers": dict(request.headers.items()),
    }


async def _healthz() -> dict[str, str]:
    return {"status": "ok"}


def profile_app() -> FastAPI:
    app = FastAPI(title="Vafa profile", description="Customers.", responses=PROBLEM_RESPONSES)
    install_problem_handlers(app)
    r = APIRouter(tags=["customers"])

    @r.get("/v1/customers/lookup")
    async def lookup(request: Request) -> dict[str, Any]:
        return await _echo("profile:lookup", request)

    @r.get("/v1/customers/{customer_id}")
    async def get_customer(customer_id: str, request: Request) -> dict[str, Any]:
        return await _echo("profile:customer", request)

    @r.patch("/v1/customers/{customer_id}")
    async def patch_customer(customer_id: str, request: Request) -> dict[str, Any]:
        return await _echo("profile:customer", request)

    @r.get("/v1/customers")
    async def list_customers(request: Request) -> dict[str, Any]:
        return await _echo("profile:list", request)

    @r.get("/v1/club/me")
    async def club_me(request: Request) -> dict[str, Any]:
        return await _echo("profile:club-me", request)

    @r.post("/v1/club/login", openapi_extra={"security": []})
    async def club_login(request: Request) -> dict[str, Any]:
        return await _echo("profile:club-login", request)

    @r.get("/v1/customers/{customer_id}/gone")
    async def gone(customer_id: str) -> Response:
        return Response(
            b'{"type":"about:blank","title":"Gone","status":410}',
            status_code=410,
            media_type="application/problem+json",
            headers={"x-custom": "kept", "set-cookie": "a=1"},
        )

    @r.get("/v1/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(3)
        return {"late": "yes"}

    app.include_router(r)
    app.add_api_route("/healthz", _healthz, include_in_schema=False)
    return app


def inventory_app() -> FastAPI:
    app = FastAPI(title="Vafa inventory", description="Stock.", responses=PROBLEM_RESPONSES)
    install_problem_handlers(app)
    r = APIRouter(tags=["inventory"])

    @r.get("/v1/products/{sku}/stock")
    async def get_stock(sku: str, request: Request) -> dict[str, Any]:
        return await _echo("inventory:stock", request)

    @r.put("/v1/products/{sku}/stock")
    async def put_stock(sku: str, request: Request) -> dict[str, Any]:
        return await _echo("inventory:stock", request)

    # Also claims a profile path (under another parameter name): profile, listed first, keeps it.
    @r.get("/v1/customers/{id}")
    async def shadow(id: str, request: Request) -> dict[str, Any]:
        return await _echo("inventory:customer", request)

    app.include_router(r)
    app.add_api_route("/healthz", _healthz, include_in_schema=False)
    return app


class LocalServer:
    def __init__(self, app: FastAPI, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        )
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        for _ in range(500):
            if self.server.started:
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("test server did not start")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
async def services() -> AsyncIterator[dict[str, str]]:
    servers = {"profile": LocalServer(profile_app()), "inventory": LocalServer(inventory_app())}
    for s in servers.values():
        await s.start()
    # "loyalty" points at a port nobody listens on: a service that is down.
    urls = {name: s.url for name, s in servers.items()}
    urls["loyalty"] = f"http://127.0.0.1:{free_port()}"
    yield urls
    for s in servers.values():
        await s.stop()


def make_settings(
    kafka: KafkaSettings, services: dict[str, str] | None = None, **overrides: Any
) -> GatewaySettings:
    """Explicit settings only: nothing from the developer's environment leaks into a test."""
    base: dict[str, Any] = {
        "kafka": kafka,
        "log_json": False,
        "log_level": "WARNING",
        # Only the services given here: the defaults are switched off with an empty URL.
        "services": {
            **{
                n: ""
                for n in (
                    "profile",
                    "loyalty",
                    "segmentation",
                    "messaging",
                    "ticketing",
                    "inventory",
                )
            },
            **(services or {}),
        },
        "admin_api_key": SECRETS.admin_key,
        "api_keys": [
            {"name": "storefront", "role": "shop", "key_sha256": _sha(SECRETS.shop_key)},
            {"name": "vera", "role": "viewer", "key_sha256": _sha(SECRETS.viewer_key)},
        ],
        "jwt_secret": SECRETS.jwt,
        "internal_token": SECRETS.internal_token,
        "shopify_webhook_secret": SECRETS.shopify,
        "woocommerce_webhook_secret": SECRETS.woocommerce,
        "standard_webhook_secret": SECRETS.standard,
        "upstream_timeout_seconds": 1.0,
        "kafka_send_timeout_seconds": 5.0,
    }
    base.update(overrides)
    return GatewaySettings(**base)


def _sha(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


class Gateway:
    """Runs a gateway app (lifespan included) and gives an httpx client on it."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gateway.test"
        )

    async def __aenter__(self) -> httpx.AsyncClient:
        await self._lifespan.__aenter__()
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)


@pytest.fixture(scope="session")
def settings_factory(kafka: KafkaSettings) -> Callable[..., GatewaySettings]:
    """make_settings bound to this run's Kafka: settings_factory(services, **overrides)."""

    def factory(services: dict[str, str] | None = None, **overrides: Any) -> GatewaySettings:
        return make_settings(overrides.pop("kafka", kafka), services, **overrides)

    return factory


@pytest.fixture(scope="session")
def gateway_factory() -> Callable[[GatewaySettings], Gateway]:
    """`async with gateway_factory(settings) as client:` runs another gateway for one test."""
    return Gateway


@pytest.fixture(scope="session")
async def gateway_settings(kafka: KafkaSettings, services: dict[str, str]) -> GatewaySettings:
    return make_settings(kafka, services)


@pytest.fixture(scope="session")
async def gw(gateway_settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    async with Gateway(gateway_settings) as client:
        yield client


@pytest.fixture(scope="session")
def serve() -> Callable[..., LocalServer]:
    """`serve(app, port=0)`: a LocalServer to start and stop inside a test."""
    return LocalServer


@pytest.fixture(scope="session")
def fake_apps() -> dict[str, Callable[[], FastAPI]]:
    return {"profile": profile_app, "inventory": inventory_app}

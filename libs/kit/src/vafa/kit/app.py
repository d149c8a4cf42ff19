"""`create_service_app`: one way to build every service's FastAPI app.

It wires settings, the database, problem+json errors, request context and size limit,
`/healthz` (the process lives), `/readyz` (the database and Kafka answer) and `/metrics`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vafa.kit.db import Database
from vafa.kit.errors import (
    PROBLEM_RESPONSES,
    install_problem_handlers,
    problem_media_type,
    problem_response,
)
from vafa.kit.http import BodySizeLimitMiddleware, RequestContextMiddleware
from vafa.kit.kafka import check_kafka
from vafa.kit.logs import configure_logging
from vafa.kit.settings import ServiceSettings

log = structlog.get_logger(__name__)


class KafkaProbe:
    """Caches the broker check for a few seconds: /readyz is polled often, the broker need not be."""

    def __init__(self, settings: ServiceSettings, ttl: float = 5.0) -> None:
        self.settings = settings
        self.ttl = ttl
        self._at = 0.0
        self._error: str | None = None
        self._lock = asyncio.Lock()

    async def error(self) -> str | None:
        async with self._lock:
            if time.monotonic() - self._at > self.ttl:
                try:
                    await check_kafka(self.settings.kafka)
                    self._error = None
                except Exception as exc:
                    self._error = repr(exc)
                self._at = time.monotonic()
            return self._error


# A readiness check returns None when its dependency answers, else what is wrong.
ReadinessCheck = Callable[[Request], Awaitable[str | None]]


async def database_check(request: Request) -> str | None:
    try:
        await asyncio.wait_for(request.app.state.db.ping(), 3)
        return None
    except Exception as exc:
        return repr(exc)


async def kafka_check(request: Request) -> str | None:
    error: str | None = await request.app.state.kafka_probe.error()
    return error


def ops_router(
    checks: Mapping[str, ReadinessCheck],
    *,
    details: Callable[[Request], Awaitable[dict[str, Any]]] | None = None,
) -> APIRouter:
    """/healthz (the process lives), /readyz (every check passes; `details` adds information
    that does not decide readiness) and /metrics, kept out of the public OpenAPI document."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        return {"status": "ok", "service": request.app.state.settings.service_name}

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        names = list(checks)
        errors = await asyncio.gather(*(checks[n](request) for n in names))
        results = {n: e or "ok" for n, e in zip(names, errors, strict=True)}
        extra = await details(request) if details else {}
        if all(e is None for e in errors):
            return JSONResponse({"status": "ready", "checks": results, **extra})
        return problem_response(503, "A dependency is not reachable.", checks=results, **extra)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    version: str = "0.1.0",
    openapi_tags: list[dict[str, Any]] | None = None,
) -> FastAPI:
    configure_logging(settings.log_level, json=settings.log_json, service=settings.service_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(settings.database_url, pool_size=settings.db_pool_size)
        app.state.kafka_probe = KafkaProbe(settings)
        log.info("api_started", port=settings.port)
        try:
            yield
        finally:
            await app.state.db.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
        openapi_tags=openapi_tags,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, overrides=settings.body_limits
    )
    app.add_middleware(RequestContextMiddleware)
    app.include_router(ops_router({"database": database_check, "kafka": kafka_check}))
    for router in routers:
        app.include_router(router)
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_media_type(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app

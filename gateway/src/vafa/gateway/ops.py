"""/healthz, /readyz and /metrics for the gateway.

kit.app.ops_router's /readyz checks a database, which the (stateless) gateway has not, so the
gateway has its own: ready means Kafka answers (webhooks cannot be accepted otherwise); the
services are listed with whether their /healthz answers, for information, since the gateway
still serves webhooks and the services that are up while one is down.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vafa.gateway.directory import ServiceDirectory
from vafa.kit.errors import problem_response

router = APIRouter(include_in_schema=False)


async def _service_health(client: httpx.AsyncClient, base: str) -> str:
    try:
        r = await client.get(f"{base}/healthz", timeout=1.0)
    except httpx.HTTPError as exc:
        return repr(exc)
    return "ok" if r.status_code == 200 else f"HTTP {r.status_code}"


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, str]:
    return {"status": "ok", "service": request.app.state.settings.service_name}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    state = request.app.state
    directory: ServiceDirectory = state.directory
    names = list(directory.services)
    kafka_error, *health = await asyncio.gather(
        state.kafka_probe.error(),
        *(_service_health(directory.client, directory.services[n]) for n in names),
    )
    checks = {"kafka": kafka_error or "ok"}
    services = dict(zip(names, health, strict=True))
    if kafka_error is None:
        return JSONResponse({"status": "ready", "checks": checks, "services": services})
    return problem_response(
        503,
        "Kafka is not reachable: webhooks cannot be accepted.",
        checks=checks,
        services=services,
    )


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

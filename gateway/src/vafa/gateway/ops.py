"""/healthz, /readyz and /metrics for the gateway, from the kit's ops router.

The gateway is stateless: ready means Kafka answers (webhooks cannot be accepted otherwise).
The services are listed with whether their /healthz answers, for information, since the gateway
still serves webhooks and the services that are up while one is down.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import Request

from vafa.gateway.directory import ServiceDirectory
from vafa.kit.app import kafka_check, ops_router


async def _service_health(client: httpx.AsyncClient, base: str) -> str:
    try:
        r = await client.get(f"{base}/healthz", timeout=1.0)
    except httpx.HTTPError as exc:
        return repr(exc)
    return "ok" if r.status_code == 200 else f"HTTP {r.status_code}"


async def _services(request: Request) -> dict[str, Any]:
    directory: ServiceDirectory = request.app.state.directory
    names = list(directory.services)
    health = await asyncio.gather(
        *(_service_health(directory.client, directory.services[n]) for n in names)
    )
    return {"services": dict(zip(names, health, strict=True))}


router = ops_router({"kafka": kafka_check}, details=_services)

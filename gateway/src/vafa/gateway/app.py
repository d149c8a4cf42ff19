"""`create_app`: the gateway — one API surface over the services, auth, and the shop webhook
receiver that writes `shop.orders.v1`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import structlog
from fastapi import FastAPI

from vafa.gateway import openapi as openapi_routes
from vafa.gateway import ops, proxy
from vafa.gateway.auth import Authenticator
from vafa.gateway.config import GatewaySettings
from vafa.gateway.directory import ServiceDirectory
from vafa.gateway.publisher import EventPublisher
from vafa.gateway.routing import operations
from vafa.gateway.webhooks.router import router as webhooks_router
from vafa.gateway.webhooks.schemas import StandardOrderWebhook
from vafa.gateway.webhooks.signatures import StandardVerifier
from vafa.kit.app import KafkaProbe
from vafa.kit.errors import PROBLEM_RESPONSES, install_problem_handlers
from vafa.kit.http import BodySizeLimitMiddleware, RequestContextMiddleware
from vafa.kit.logs import configure_logging

log = structlog.get_logger(__name__)

DESCRIPTION = """\
The one HTTP surface of Vafa, an open-source CRM and customer club for online shops.

* **Shops and staff** call `/v1/...` with `Authorization: Bearer <API key>`.
* **Club members** call `/v1/club/...` with the JWT they got at club login.
* **Shop platforms** post signed webhooks to `/v1/webhooks/{shopify,woocommerce,standard}`.

Every error is an RFC 9457 `application/problem+json` document.
"""


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(settings.log_level, json=settings.log_json, service=settings.service_name)

    standard_secret = settings.standard_webhook_secret.get_secret_value()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.upstream_timeout_seconds),
            limits=httpx.Limits(
                max_connections=settings.upstream_max_connections,
                max_keepalive_connections=settings.upstream_max_keepalive,
            ),
            follow_redirects=False,
        )
        directory = ServiceDirectory(
            settings.services,
            client,
            refresh_after=settings.openapi_refresh_seconds,
            reserved={path: "gateway" for path in app.state.gateway_paths},
        )
        publisher = EventPublisher(settings.kafka)
        app.state.directory = directory
        app.state.publisher = publisher
        app.state.kafka_probe = KafkaProbe(settings)
        await publisher.start()
        warm_up = asyncio.create_task(directory.warm_up(), name="openapi-warm-up")
        log.info("gateway_started", port=settings.port, services=list(settings.services))
        if not settings.internal_token.get_secret_value():
            # The services fail closed without it: say so at once rather than on every 401.
            log.warning(
                "internal_token_missing",
                detail="VAFA_INTERNAL_TOKEN is empty: services will treat every caller as "
                "anonymous and answer 401 on all but public routes.",
            )
        try:
            yield
        finally:
            warm_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm_up
            await publisher.stop()
            await client.aclose()

    app = FastAPI(
        title="Vafa API",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
        openapi_url=None,  # /openapi.json is the merged document, served by openapi.router
        docs_url=None,
        redoc_url=None,
        openapi_tags=[
            {"name": "webhooks", "description": "Signed order webhooks from shop platforms."}
        ],
    )
    app.state.settings = settings
    app.state.authenticator = Authenticator(
        settings.all_api_keys(), settings.jwt_secret.get_secret_value()
    )
    app.state.standard_verifier = (
        StandardVerifier(standard_secret, settings.webhook_tolerance_seconds)
        if standard_secret
        else None
    )
    install_problem_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes, overrides=settings.body_limits
    )
    app.add_middleware(RequestContextMiddleware)
    app.include_router(ops.router)
    app.include_router(openapi_routes.router)
    app.include_router(webhooks_router)
    app.include_router(proxy.router)  # the catch-all, last

    app.state.gateway_openapi = openapi_routes.gateway_document(
        app, extra_models=[StandardOrderWebhook]
    )
    # The gateway's own /v1 paths (the webhook receivers) and their methods: no service may
    # claim them, and the proxy answers 405 for another method on them.
    app.state.gateway_paths = {
        path: sorted(m.upper() for m in operations(item))
        for path, item in app.state.gateway_openapi["paths"].items()
    }
    return app

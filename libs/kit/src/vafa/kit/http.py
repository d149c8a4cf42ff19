"""ASGI middlewares every app shares: request context (request id, trace id, access metrics)
and the request-size limit. Pure ASGI rather than BaseHTTPMiddleware: no per-request task."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vafa.kit.errors import PROBLEM_JSON
from vafa.kit.logs import current_traceparent, trace_id_from_traceparent

HTTP_REQUESTS = Counter(
    "vafa_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "vafa_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

log = structlog.get_logger("vafa.http")


def new_traceparent() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


class RequestContextMiddleware:
    """Binds request_id and trace_id for the logs, echoes X-Request-ID, records metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or secrets.token_hex(
            8
        )
        traceparent = headers.get(b"traceparent", b"").decode("latin-1")
        if not trace_id_from_traceparent(traceparent):
            traceparent = new_traceparent()
            scope["headers"] = [*scope["headers"], (b"traceparent", traceparent.encode())]
        structlog.contextvars.bind_contextvars(
            request_id=request_id, trace_id=trace_id_from_traceparent(traceparent)
        )
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_traceparent.set(traceparent)
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(method, path, str(status)).inc()
            HTTP_LATENCY.labels(method, path).observe(time.perf_counter() - start)
            structlog.contextvars.unbind_contextvars("request_id", "trace_id")
            current_traceparent.reset(token)


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413 problem+json, by Content-Length up front and by
    counting while streaming (a chunked body has no Content-Length). `overrides` gives single
    routes their own limit, keyed "METHOD /path" (a CSV upload beside 1 MiB JSON routes); the
    path may be a template, "POST /v1/segments/{segment_id}/members/import"."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, overrides: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides: dict[str, int] = {}
        self.templates: list[tuple[re.Pattern[str], int]] = []
        for route, limit in (overrides or {}).items():
            method, _, path = route.strip().partition(" ")
            key = f"{method.upper()} {path.strip()}"
            if "{" in key:
                parts = re.split(r"\{[^/{}]+\}", key)
                self.templates.append(
                    (re.compile("[^/]+".join(re.escape(p) for p in parts) + r"\Z"), limit)
                )
            else:
                self.overrides[key] = limit

    def limit_for(self, method: str, path: str) -> int:
        key = f"{method} {path}"
        if key in self.overrides:
            return self.overrides[key]
        for pattern, limit in self.templates:
            if pattern.match(key):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(scope, send, limit)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not response_started:
                await self._reject(scope, send, limit)

    async def _reject(self, scope: Scope, send: Send, limit: int) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": "Content Too Large",
                "status": 413,
                "detail": f"The request body is larger than the limit of {limit} bytes.",
                "instance": scope.get("path"),
                "limit_bytes": limit,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass

"""Forwards `/v1/...` to the service that documents the path, with the shared httpx client.

Identity is asserted here and nowhere else: whatever X-Vafa-* headers a client sends are
dropped, and the gateway adds X-Vafa-Principal, X-Vafa-Roles and X-Vafa-Internal-Token, plus
X-Request-ID and a child traceparent so the trace continues into the service. Credentials
(Authorization) stop at the gateway. The whole exchange with a service is bounded by
`upstream_timeout_seconds`: a service that does not answer in time is a 504, one that cannot be
reached a 502, both problem+json.
"""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import quote

import httpx
import structlog
from fastapi import APIRouter, Request, Response

from vafa.gateway.auth import Authenticator
from vafa.gateway.config import GatewaySettings
from vafa.gateway.directory import ServiceDirectory
from vafa.kit.auth import INTERNAL_TOKEN_HEADER, PRINCIPAL_HEADER, ROLES_HEADER, Principal
from vafa.kit.errors import Problem
from vafa.kit.logs import current_traceparent, trace_id_from_traceparent

log = structlog.get_logger(__name__)

PROXY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"trailers",
    b"transfer-encoding",
    b"upgrade",
}
# Request headers the gateway never passes on (it sets its own where relevant).
_DROP_REQUEST = _HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"authorization",
    b"x-request-id",
    b"traceparent",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"expect",
}
_DROP_RESPONSE = _HOP_BY_HOP | {b"content-length", b"x-request-id", b"server", b"date"}

router = APIRouter(include_in_schema=False)


def child_traceparent(parent: str | None) -> str:
    """The same trace, a new span id: the gateway's hop."""
    trace_id = trace_id_from_traceparent(parent)
    if trace_id is None or parent is None:
        return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    flags = parent.split("-")[3]
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def _connection_tokens(raw: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1)."""
    tokens: set[bytes] = set()
    for name, value in raw:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def upstream_headers(
    request: Request, principal: Principal, settings: GatewaySettings
) -> list[tuple[bytes, bytes]]:
    raw = request.headers.raw
    drop = _DROP_REQUEST | _connection_tokens(raw)
    headers = [
        (name, value)
        for name, value in raw
        if (low := name.lower()) not in drop and not low.startswith(b"x-vafa-")
    ]
    request_id = request.scope.get("state", {}).get("request_id") or secrets.token_hex(8)
    if principal.kind != "anonymous":
        headers += [
            (PRINCIPAL_HEADER.encode(), principal.header_value().encode()),
            (ROLES_HEADER.encode(), ",".join(sorted(principal.roles)).encode()),
        ]
    headers += [
        (b"x-request-id", request_id.encode()),
        (b"traceparent", child_traceparent(current_traceparent.get()).encode()),
    ]
    token = settings.internal_token.get_secret_value()
    if token:
        headers.append((INTERNAL_TOKEN_HEADER.encode(), token.encode()))
    client = request.client
    if client is not None:
        headers.append((b"x-forwarded-for", client.host.encode()))
    headers.append((b"x-forwarded-proto", request.url.scheme.encode()))
    if host := request.headers.get("host"):
        headers.append((b"x-forwarded-host", host.encode("latin-1")))
    return headers


def _raw_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1")
    return quote(request.url.path)


@router.api_route("/v1/{rest:path}", methods=PROXY_METHODS)
async def forward(request: Request) -> Response:
    state = request.app.state
    settings: GatewaySettings = state.settings
    directory: ServiceDirectory = state.directory
    authenticator: Authenticator = state.authenticator
    path = _raw_path(request)

    own_methods: dict[str, list[str]] = state.gateway_paths
    if path in own_methods:  # a gateway route reached with the wrong method
        allowed = ", ".join(own_methods[path])
        raise Problem(405, f"Use {allowed} on {path}.", headers={"Allow": allowed})

    route = await directory.resolve(path)
    public = route is not None and route.is_public(request.method)
    principal = authenticator.authorize(request.headers.get("authorization"), path, public=public)
    if route is None:
        raise Problem(404, f"No service serves {path}.", type="not-found")

    base = directory.services[route.service]
    query = request.scope.get("query_string", b"")
    url = base + path + (("?" + query.decode("latin-1")) if query else "")
    body = await request.body()
    upstream = directory.client.build_request(
        request.method, url, headers=upstream_headers(request, principal, settings), content=body
    )
    timeout = settings.upstream_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            response = await directory.client.send(upstream, stream=True)
            try:
                content = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
    except (TimeoutError, httpx.TimeoutException):
        log.warning("upstream_timeout", service=route.service, path=path)
        raise Problem(
            504,
            f"The {route.service} service did not answer within {timeout:g} s.",
            type="upstream-timeout",
            service=route.service,
        ) from None
    except httpx.TransportError as exc:
        log.warning("upstream_unreachable", service=route.service, path=path, error=repr(exc))
        raise Problem(
            502,
            f"The {route.service} service is not reachable.",
            type="upstream-unavailable",
            service=route.service,
        ) from None

    drop = _DROP_RESPONSE | _connection_tokens(response.headers.raw)
    if request.method == "HEAD":
        drop = drop - {b"content-length"}  # the length of the body a GET would have had
    out = Response(content=content, status_code=response.status_code)
    out.raw_headers = [(n, v) for n, v in response.headers.raw if n.lower() not in drop]
    if (
        request.method != "HEAD"
        and response.status_code >= 200
        and response.status_code not in (204, 304)
    ):
        out.raw_headers.append((b"content-length", str(len(content)).encode()))
    return out

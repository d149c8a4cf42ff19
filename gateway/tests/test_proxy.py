"""Forwarding to real (small) services over HTTP: routing, what is passed on, and failures."""

from __future__ import annotations

import time
from typing import Any

import httpx

from vafa.gateway.testing import assert_problem


def auth(secrets: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {secrets.admin_key}"}


async def test_literal_route_beats_the_parameter_route(gw: httpx.AsyncClient, secrets: Any) -> None:
    r = await gw.get(
        "/v1/customers/lookup", params={"email": "a@example.com"}, headers=auth(secrets)
    )
    assert r.json()["service"] == "profile:lookup"
    assert r.json()["query"] == "email=a%40example.com"
    r = await gw.get("/v1/customers/c-1", headers=auth(secrets))
    assert r.json()["service"] == "profile:customer"
    r = await gw.get("/v1/customers", params={"phone": "+98 912"}, headers=auth(secrets))
    assert r.json()["service"] == "profile:list" and r.json()["query"] == "phone=%2B98+912"


async def test_method_body_query_and_encoded_path_are_passed_on(
    gw: httpx.AsyncClient, secrets: Any
) -> None:
    r = await gw.patch(
        "/v1/customers/%DA%A9-1?tag=vip&tag=%D9%88%DB%8C%DA%98%D9%87",
        json={"first_name": "کیان"},
        headers=auth(secrets),
    )
    echo = r.json()
    assert echo["method"] == "PATCH"
    assert echo["raw_path"] == "/v1/customers/%DA%A9-1"
    assert echo["query"] == "tag=vip&tag=%D9%88%DB%8C%DA%98%D9%87"
    assert echo["body"] == '{"first_name":"کیان"}'
    r = await gw.put(
        "/v1/products/%D8%B2%D8%B9%D9%81%D8%B1%D8%A7%D9%86%201/stock",
        json={"on_hand": 3},
        headers=auth(secrets),
    )
    assert r.json()["service"] == "inventory:stock"
    assert r.json()["raw_path"] == "/v1/products/%D8%B2%D8%B9%D9%81%D8%B1%D8%A7%D9%86%201/stock"
    assert r.json()["path"] == "/v1/products/زعفران 1/stock"


async def test_request_id_and_trace_continue_into_the_service(
    gw: httpx.AsyncClient, secrets: Any
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = await gw.get(
        "/v1/customers/1",
        headers={**auth(secrets), "X-Request-ID": "req-abc", "traceparent": parent},
    )
    h = r.json()["headers"]
    assert h["x-request-id"] == "req-abc"
    assert r.headers.get_list("x-request-id") == ["req-abc"]
    version, trace_id, span_id, flags = h["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "01")
    assert span_id != "b7ad6b7169203331" and len(span_id) == 16


async def test_service_answers_pass_through(gw: httpx.AsyncClient, secrets: Any) -> None:
    r = await gw.get("/v1/customers/1/gone", headers=auth(secrets))
    assert r.status_code == 410
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["x-custom"] == "kept" and r.headers["set-cookie"] == "a=1"
    assert r.json()["title"] == "Gone"
    assert int(r.headers["content-length"]) == len(r.content)


async def test_unknown_path_is_404_problem(gw: httpx.AsyncClient, secrets: Any) -> None:
    p = assert_problem(await gw.get("/v1/nowhere/at/all", headers=auth(secrets)), 404)
    assert "/v1/nowhere/at/all" in p["detail"]


async def test_wrong_method_on_a_webhook_receiver_is_405(gw: httpx.AsyncClient) -> None:
    r = await gw.get("/v1/webhooks/shopify")
    assert_problem(r, 405)
    assert r.headers["allow"] == "POST"


async def test_slow_service_is_504(gw: httpx.AsyncClient, secrets: Any) -> None:
    started = time.monotonic()
    p = assert_problem(await gw.get("/v1/slow", headers=auth(secrets)), 504)
    assert time.monotonic() - started < 2.5  # upstream_timeout_seconds is 1 s in the tests
    assert p["service"] == "profile"


async def test_service_that_starts_late_then_goes_down(
    settings_factory: Any, gateway_factory: Any, serve: Any, fake_apps: Any, secrets: Any
) -> None:
    server = serve(fake_apps["profile"]())  # port reserved, nothing listening yet
    settings = settings_factory({"profile": server.url}, openapi_refresh_seconds=0)
    async with gateway_factory(settings) as client:
        try:
            # Not up: its routes are unknown yet.
            assert_problem(await client.get("/v1/customers/1", headers=auth(secrets)), 404)
            await server.start()
            # Up: the unmatched path makes the gateway fetch the document again.
            r = await client.get("/v1/customers/1", headers=auth(secrets))
            assert r.status_code == 200 and r.json()["service"] == "profile:customer"
            openapi = (await client.get("/openapi.json")).json()
            assert "/v1/customers/{customer_id}" in openapi["paths"]
        finally:
            await server.stop()
        # Down again: its routes are still known, and the answer says it is unreachable.
        p = assert_problem(await client.get("/v1/customers/1", headers=auth(secrets)), 502)
        assert p["service"] == "profile" and "not reachable" in p["detail"]


async def test_readiness_lists_the_services(gw: httpx.AsyncClient) -> None:
    r = await gw.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["checks"] == {"kafka": "ok"}
    assert body["services"]["profile"] == "ok" and body["services"]["inventory"] == "ok"
    assert body["services"]["loyalty"] != "ok"  # nothing listens there

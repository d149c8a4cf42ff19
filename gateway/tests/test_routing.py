"""Template matching for the proxy (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from vafa.gateway.routing import Route, RouteTable, build_table, route_key


def table(*templates: str) -> RouteTable:
    return RouteTable(Route.build(t, f"svc{i}", ["GET"]) for i, t in enumerate(templates))


def test_literal_beats_parameter_whatever_the_order() -> None:
    for templates in (
        ("/v1/customers/{customer_id}", "/v1/customers/lookup"),
        ("/v1/customers/lookup", "/v1/customers/{customer_id}"),
    ):
        t = table(*templates)
        lookup = t.match("/v1/customers/lookup")
        assert lookup is not None and lookup.template == "/v1/customers/lookup"
        other = t.match("/v1/customers/c-42")
        assert other is not None and other.template == "/v1/customers/{customer_id}"


def test_leftmost_literal_wins() -> None:
    t = table("/v1/{kind}/special", "/v1/customers/{customer_id}")
    hit = t.match("/v1/customers/special")
    assert hit is not None and hit.template == "/v1/customers/{customer_id}"
    hit = t.match("/v1/orders/special")
    assert hit is not None and hit.template == "/v1/{kind}/special"


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/customers/42/points", "/v1/customers/{customer_id}/points"),
        ("/v1/customers/42", "/v1/customers/{customer_id}"),
        ("/v1/customers", "/v1/customers"),
        (
            "/v1/products/SKU%2F1/stock",
            "/v1/products/{sku}/stock",
        ),  # an encoded slash stays one segment
        ("/v1/products/%D8%B2%D8%B9%D9%81%D8%B1%D8%A7%D9%86/stock", "/v1/products/{sku}/stock"),
        ("/v1/club/me", "/v1/club/me"),
        ("/v1/club/me/points", "/v1/club/me/points"),
        ("/v1/files/report.json", "/v1/files/{name}.json"),
    ],
)
def test_matches(path: str, template: str) -> None:
    t = table(
        "/v1/customers",
        "/v1/customers/{customer_id}",
        "/v1/customers/{customer_id}/points",
        "/v1/products/{sku}/stock",
        "/v1/club/me",
        "/v1/club/me/points",
        "/v1/files/{name}.json",
    )
    hit = t.match(path)
    assert hit is not None and hit.template == template


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/42/points/extra",
        "/v1/customer",
        "/v1/customers/",
        "/v1//points",
        "/v2/customers",
        "/",
        "",
    ],
)
def test_does_not_match(path: str) -> None:
    t = table("/v1/customers", "/v1/customers/{customer_id}", "/v1/customers/{customer_id}/points")
    assert t.match(path) is None


def test_literal_segments_compare_decoded() -> None:
    t = table("/v1/customers/lookup", "/v1/customers/{customer_id}")
    hit = t.match("/v1/customers/look%75p")
    assert hit is not None and hit.template == "/v1/customers/lookup"


def doc(*paths: str, public: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "paths": {
            p: {
                "get": {"responses": {}},
                **({"post": {"security": [], "responses": {}}} if p in public else {}),
            }
            for p in paths
        },
    }


def test_build_table_first_owner_wins_and_reports_duplicates() -> None:
    t, duplicates = build_table(
        [
            (
                "profile",
                doc("/v1/customers/{customer_id}", "/v1/club/login", public=("/v1/club/login",)),
            ),
            ("loyalty", doc("/v1/customers/{id}", "/v1/customers/{customer_id}/points")),
        ],
        reserved={"/v1/webhooks/shopify": "gateway"},
    )
    assert [str(d) for d in duplicates] == [
        "/v1/customers/{id} of loyalty is already served by profile"
    ]
    hit = t.match("/v1/customers/7")
    assert hit is not None and hit.service == "profile"
    points = t.match("/v1/customers/7/points")
    assert points is not None and points.service == "loyalty"
    login = t.match("/v1/club/login")
    assert login is not None and login.is_public("POST") and not login.is_public("GET")

    _, duplicates = build_table(
        [("x", doc("/v1/webhooks/shopify"))], reserved={"/v1/webhooks/shopify": "gateway"}
    )
    assert [d.owner for d in duplicates] == ["gateway"]


def test_route_key_erases_parameter_names() -> None:
    assert route_key("/v1/a/{x}/b/{y}") == route_key("/v1/a/{p}/b/{q}") == "/v1/a/{}/b/{}"

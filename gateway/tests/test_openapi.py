"""The merged OpenAPI document: the pure merge on small documents, and the served one built
from real (small) services over HTTP."""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import httpx
from openapi_spec_validator import validate

from vafa.gateway.openapi import merge_openapi
from vafa.gateway.routing import HTTP_METHODS


def gateway_doc() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vafa API", "version": "0.1.0"},
        "paths": {
            "/v1/webhooks/shopify": {
                "post": {
                    "operationId": "shopify",
                    "security": [],
                    "responses": {"202": {"description": "ok"}},
                }
            }
        },
        "components": {"schemas": {"ProblemModel": {"type": "object", "title": "ProblemModel"}}},
        "tags": [{"name": "webhooks"}],
    }


def service_doc(title: str, paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1", "description": f"{title} things"},
        "servers": [{"url": "http://127.0.0.1:9"}],
        "paths": paths,
        "components": {"schemas": schemas},
    }


def op(ref: str, op_id: str, tags: list[str] | None = None, *params: str) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ],
        **({"tags": tags} if tags else {}),
        "responses": {
            "200": {
                "description": "ok",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}
                },
            },
            "4XX": {
                "description": "Client error",
                "content": {
                    "application/problem+json": {},
                    "application/json": {"schema": {"$ref": "#/components/schemas/ProblemModel"}},
                },
            },
        },
    }


PROFILE = service_doc(
    "Vafa profile",
    {
        "/v1/customers/{customer_id}": {
            "get": op("Customer", "get_customer", ["customers"], "customer_id")
        },
        "/v1/customers/lookup": {"get": op("Customer", "lookup")},
    },
    {
        "Customer": {
            "type": "object",
            "properties": {"tier": {"$ref": "#/components/schemas/Tier"}},
        },
        "Tier": {"type": "string", "enum": ["member", "vip"]},
        "ProblemModel": {"type": "object", "title": "ProblemModel"},
    },
)
LOYALTY = service_doc(
    "Vafa loyalty",
    {
        "/v1/customers/{customer_id}/points": {
            "get": op("Balance", "get_customer", ["points"], "customer_id")
        },
        # The same route as profile's, under another parameter name: profile keeps it.
        "/v1/customers/{id}": {"get": op("Balance", "shadow", None, "id")},
        "/v1/webhooks/shopify": {"post": op("Balance", "steal")},
    },
    {
        # Same name as profile's, different meaning: renamed, and its $refs follow.
        "Tier": {"type": "object", "properties": {"name": {"type": "string"}}},
        # Textually equal to profile's Customer but its Tier is another: renamed too.
        "Customer": {
            "type": "object",
            "properties": {"tier": {"$ref": "#/components/schemas/Tier"}},
        },
        "Balance": {
            "type": "object",
            "properties": {
                "tier": {"$ref": "#/components/schemas/Tier"},
                "holder": {"$ref": "#/components/schemas/Customer"},
            },
        },
        "ProblemModel": {"type": "object", "title": "ProblemModel"},
    },
)


def all_paths(doc: dict[str, Any]) -> list[str]:
    return list(doc["paths"])


def test_merge_validates_and_every_path_appears_once() -> None:
    inputs = copy.deepcopy([("profile", PROFILE), ("loyalty", LOYALTY)])
    result = merge_openapi(gateway_doc(), inputs)
    doc = result.document
    validate(doc)  # OpenAPI 3.1
    assert doc["openapi"] == "3.1.0"
    assert sorted(all_paths(doc)) == [
        "/v1/customers/lookup",
        "/v1/customers/{customer_id}",
        "/v1/customers/{customer_id}/points",
        "/v1/webhooks/shopify",
    ]
    assert sorted(result.duplicates) == [
        "/v1/customers/{id} of loyalty is already served by profile",
        "/v1/webhooks/shopify of loyalty is already served by gateway",
    ]
    # The gateway's own webhook receiver is untouched by loyalty's claim.
    assert doc["paths"]["/v1/webhooks/shopify"]["post"]["operationId"] == "shopify"
    assert inputs == [("profile", PROFILE), ("loyalty", LOYALTY)]  # inputs are not mutated


def test_merge_renames_clashing_schemas_and_rewrites_refs() -> None:
    result = merge_openapi(gateway_doc(), [("profile", PROFILE), ("loyalty", LOYALTY)])
    schemas = result.document["components"]["schemas"]
    assert result.renamed == {
        "loyalty": {"schemas/Tier": "loyalty_Tier", "schemas/Customer": "loyalty_Customer"}
    }
    assert schemas["Tier"] == PROFILE["components"]["schemas"]["Tier"]
    assert schemas["loyalty_Tier"] == LOYALTY["components"]["schemas"]["Tier"]
    assert schemas["loyalty_Customer"]["properties"]["tier"] == {
        "$ref": "#/components/schemas/loyalty_Tier"
    }
    assert schemas["Customer"]["properties"]["tier"] == {"$ref": "#/components/schemas/Tier"}
    assert schemas["Balance"]["properties"] == {
        "tier": {"$ref": "#/components/schemas/loyalty_Tier"},
        "holder": {"$ref": "#/components/schemas/loyalty_Customer"},
    }
    # The identical ProblemModel is shared, not duplicated.
    assert [n for n in schemas if n.endswith("ProblemModel")] == ["ProblemModel"]
    # Every $ref in the document resolves.
    text = json.dumps(result.document)
    for name in {r.split("/")[-1] for r in _refs(result.document)}:
        assert name in schemas, name
    assert "loyalty_Tier" in text


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_merge_tags_security_operation_ids_and_problem_json() -> None:
    doc = merge_openapi(gateway_doc(), [("profile", PROFILE), ("loyalty", LOYALTY)]).document
    assert [t["name"] for t in doc["tags"]] == ["webhooks", "profile", "loyalty"]
    assert doc["tags"][1]["description"] == "Vafa profile — Vafa profile things"
    customer = doc["paths"]["/v1/customers/{customer_id}"]["get"]
    assert customer["tags"] == ["profile"] and customer["x-vafa-tags"] == ["customers"]
    points = doc["paths"]["/v1/customers/{customer_id}/points"]["get"]
    assert points["operationId"] == "loyalty_get_customer"  # clashed with profile's
    ids = [
        o["operationId"]
        for item in doc["paths"].values()
        for m, o in item.items()
        if m in HTTP_METHODS
    ]
    assert len(ids) == len(set(ids))
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/v1/webhooks/shopify"]["post"]["security"] == []
    error = customer["responses"]["4XX"]["content"]
    assert error == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemModel"}}
    }
    assert "servers" not in doc


def test_merge_of_nothing_is_the_gateway_alone() -> None:
    result = merge_openapi(gateway_doc(), [])
    validate(result.document)
    assert all_paths(result.document) == ["/v1/webhooks/shopify"]


async def test_served_openapi_merges_the_running_services(gw: httpx.AsyncClient) -> None:
    r = await gw.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    paths = list(doc["paths"])
    assert len(paths) == len(set(paths))
    counts = Counter(paths)
    assert all(c == 1 for c in counts.values())
    for expected in (
        "/v1/webhooks/shopify",
        "/v1/webhooks/woocommerce",
        "/v1/webhooks/standard",
        "/v1/customers/{customer_id}",
        "/v1/customers/lookup",
        "/v1/club/login",
        "/v1/products/{sku}/stock",
    ):
        assert expected in doc["paths"], expected
    assert "/v1/customers/{id}" not in doc["paths"]  # inventory's duplicate: profile keeps it
    assert not any(p.startswith(("/healthz", "/readyz", "/metrics", "/openapi")) for p in paths)
    assert {"put", "get"} <= set(doc["paths"]["/v1/products/{sku}/stock"])
    assert doc["paths"]["/v1/products/{sku}/stock"]["get"]["tags"] == ["inventory"]
    standard = doc["paths"]["/v1/webhooks/standard"]["post"]
    assert standard["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StandardOrderWebhook"
    }
    vafa_order = doc["components"]["schemas"]["VafaOrder"]
    assert vafa_order["properties"]["total_minor"]["type"] == "integer"
    assert "ProblemModel" in doc["components"]["schemas"]
    docs = await gw.get("/docs")
    assert (
        docs.status_code == 200 and "/openapi.json" in docs.text and "swagger" in docs.text.lower()
    )

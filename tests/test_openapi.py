"""The gateway's one OpenAPI document covers every public route of every service, once."""

from __future__ import annotations

from collections import Counter

import httpx
from openapi_spec_validator import validate

SERVICES = {
    "profile": 8101,
    "loyalty": 8102,
    "segmentation": 8103,
    "messaging": 8104,
    "ticketing": 8105,
    "inventory": 8106,
}


async def test_merged_document_is_valid_and_complete(gateway: httpx.AsyncClient) -> None:
    doc = (await gateway.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)

    operations = [
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in {"get", "put", "post", "patch", "delete"}
    ]
    assert len(operations) == len(set(operations))
    op_ids = Counter(
        item[m]["operationId"]
        for p, item in doc["paths"].items()
        for m in item
        if m in {"get", "put", "post", "patch", "delete"}
    )
    assert [k for k, n in op_ids.items() if n > 1] == []

    async with httpx.AsyncClient() as client:
        for name, port in SERVICES.items():
            own = (await client.get(f"http://127.0.0.1:{port}/openapi.json")).json()
            for path, item in own["paths"].items():
                assert path in doc["paths"], (
                    f"{name} route {path} is missing from the gateway document"
                )
                for method in item:
                    assert method in doc["paths"][path], f"{name} {method.upper()} {path} missing"
    for route in (
        "/v1/webhooks/shopify",
        "/v1/webhooks/woocommerce",
        "/v1/webhooks/standard",
        "/v1/customers/{customer_id}/points",
        "/v1/products/{sku}/stock",
    ):
        assert route in doc["paths"], route

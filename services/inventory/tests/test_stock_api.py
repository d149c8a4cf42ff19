"""Staff movements, the stock breakdown, bulk availability and back-in-stock, by API."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from vafa.events.v1 import inventory_pb2
from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers

from .helpers import ADMIN, SHOP, VIEWER, assert_ledger_is_the_stock, events, unique


async def _move(client: httpx.AsyncClient, loc: str, kind: str, sku: str, n: int, **kw: object):  # type: ignore[no-untyped-def]
    return await client.post(
        f"/v1/locations/{loc}/movements",
        json={"kind": kind, "reason": "test", "lines": [{"sku": sku, "quantity": n}], **kw},
        headers=SHOP,
    )


async def test_receipt_damage_correction_and_the_ledger(
    client: httpx.AsyncClient, db: Database
) -> None:
    sku = unique("MOVE")
    store = unique("store")
    r = await client.put(
        f"/v1/locations/{store}", json={"name": "فروشگاه ونک", "kind": "store"}, headers=ADMIN
    )
    assert r.status_code == 201
    r = await _move(client, "default", "receipt", sku, 10, reference="DN-1")
    assert r.status_code == 200 and r.json()["applied"] is True
    r = await _move(client, "default", "receipt", sku, 10, reference="DN-1")
    assert r.json()["applied"] is False  # the same delivery note again moves nothing
    r = await _move(client, store, "receipt", sku, 3)
    r = await _move(client, store, "damage", sku, 4)
    assert r.status_code == 409
    assert r.json()["items"] == [{"sku": sku, "requested": 4, "available": 3}]
    r = await _move(client, store, "damage", sku, 1)
    assert r.status_code == 200
    r = await _move(client, "default", "correction", sku, 7)
    assert r.status_code == 200
    stock = r.json()["stock"][0]
    assert (stock["on_hand"], stock["available"], stock["status"]) == (9, 9, "in_stock")
    assert {(x["location_id"], x["on_hand"]) for x in stock["locations"]} == {
        ("default", 7),
        (store, 2),
    }
    r = await client.get(f"/v1/products/{sku}/movements", headers=VIEWER)
    assert [(m["kind"], m["delta"], m["author"]) for m in r.json()] == [
        ("correction", -3, "shop:storefront"),
        ("damage", -1, "shop:storefront"),
        ("receipt", 3, "shop:storefront"),
        ("receipt", 10, "shop:storefront"),
    ]
    async with db.sessionmaker() as s:
        await assert_ledger_is_the_stock(s, sku)
    r = await _move(client, "nowhere", "receipt", sku, 1)
    assert r.status_code == 404 and r.json()["location_id"] == "nowhere"
    r = await client.post(
        "/v1/locations/default/movements",
        json={"kind": "theft", "reason": "x", "lines": [{"sku": sku, "quantity": 1}]},
        headers=SHOP,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/kind"


async def test_put_stock_counts_at_the_default_location(client: httpx.AsyncClient) -> None:
    sku = unique("PUT")
    r = await client.put(
        f"/v1/products/{sku}/stock", json={"on_hand": 4, "low_stock_threshold": 4}, headers=SHOP
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["locations"][0]["location_id"]) == ("low_stock", "default")


async def test_bulk_availability_is_public_and_in_order(client: httpx.AsyncClient) -> None:
    low, plenty = unique("AV"), unique("AV")
    await _move(client, "default", "receipt", low, 2)
    await _move(client, "default", "receipt", plenty, 50)
    r = await client.post("/v1/availability", json={"skus": [plenty, "NOPE", low, plenty]})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [
        {"sku": plenty, "status": "in_stock", "available": 50, "known": True},
        {"sku": "NOPE", "status": "out_of_stock", "available": 0, "known": False},
        {"sku": low, "status": "low_stock", "available": 2, "known": True},
    ]
    r = await client.post("/v1/availability", json={"skus": [f"S{i}" for i in range(501)]})
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/skus"
    spec = (await client.get("/openapi.json")).json()
    assert spec["paths"]["/v1/availability"]["post"]["security"] == []


async def test_back_in_stock_notifies_subscribers_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    sku = unique("BIS")
    await _move(client, "default", "receipt", sku, 1)
    r = await client.post(
        f"/v1/products/{sku}/subscriptions", json={"customer_id": "c-1"}, headers=SHOP
    )
    assert r.status_code == 409 and r.json()["available"] == 1  # in stock: nothing to wait for
    await _move(client, "default", "damage", sku, 1)
    r = await client.post(
        f"/v1/products/{sku}/subscriptions", json={"customer_id": "c-1"}, headers=SHOP
    )
    assert r.status_code == 201
    r = await client.post(
        f"/v1/products/{sku}/subscriptions", json={"customer_id": "c-1"}, headers=SHOP
    )
    assert r.status_code == 200  # already waiting
    member = principal_headers("member", "c-2", "")
    r = await client.post("/v1/club/me/back-in-stock", json={"sku": sku}, headers=member)
    assert r.status_code == 201 and r.json()["customer_id"] == "c-2"
    r = await client.post("/v1/club/me/back-in-stock", json={"sku": sku}, headers=SHOP)
    assert r.status_code == 401
    r = await client.post(
        "/v1/products/NO-SUCH-SKU/subscriptions", json={"customer_id": "c"}, headers=SHOP
    )
    assert r.status_code == 404

    await _move(client, "default", "receipt", sku, 3)
    await _move(client, "default", "damage", sku, 3)
    await _move(client, "default", "receipt", sku, 3)  # back again: nobody is waiting now
    async with db.sessionmaker() as s:
        msgs = await events(s, sku)
        waiting = (
            await s.execute(
                text(
                    "SELECT count(*) FROM back_in_stock_subscriptions "
                    "WHERE sku = :s AND notified_at IS NULL"
                ),
                {"s": sku},
            )
        ).scalar_one()
    back = [m for m in msgs if isinstance(m, inventory_pb2.BackInStock)]
    assert [(list(m.customer_ids), m.available) for m in back] == [(["c-1", "c-2"], 3)]
    assert waiting == 0
    alerts = [m for m in msgs if isinstance(m, inventory_pb2.LowStockAlert)]
    # Low-stock alerts when the status worsens (threshold 5): out, and out again.
    assert [a.status for a in alerts] == [inventory_pb2.STOCK_STATUS_OUT_OF_STOCK] * 2
    changes = [m for m in msgs if isinstance(m, inventory_pb2.StockStatusChanged)]
    assert [c.status for c in changes] == [
        inventory_pb2.STOCK_STATUS_LOW_STOCK,
        inventory_pb2.STOCK_STATUS_OUT_OF_STOCK,
        inventory_pb2.STOCK_STATUS_LOW_STOCK,
        inventory_pb2.STOCK_STATUS_OUT_OF_STOCK,
        inventory_pb2.STOCK_STATUS_LOW_STOCK,
    ]

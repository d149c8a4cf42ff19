"""Reservations by API against the real database: never oversold under contention, allocated
across locations by priority, all or nothing with a precise 409, idempotent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from vafa.inventory.stock import batch
from vafa.inventory.stock.rules import InsufficientStock, Reserve
from vafa.kit.db import Database

from .helpers import ADMIN, SHOP, assert_ledger_is_the_stock, unique


async def _location(client: httpx.AsyncClient, loc: str, priority: int) -> None:
    r = await client.put(
        f"/v1/locations/{loc}",
        json={"name": f"Store {loc}", "kind": "store", "priority": priority},
        headers=ADMIN,
    )
    assert r.status_code in (200, 201), r.text


async def _receive(client: httpx.AsyncClient, loc: str, sku: str, n: int) -> None:
    r = await client.post(
        f"/v1/locations/{loc}/movements",
        json={"kind": "receipt", "reason": "delivery", "lines": [{"sku": sku, "quantity": n}]},
        headers=SHOP,
    )
    assert r.status_code == 200, r.text


async def test_200_concurrent_reservations_for_10_units_exactly_10_succeed(
    client: httpx.AsyncClient, db: Database
) -> None:
    sku = unique("HOT")
    near, far = unique("near"), unique("far")
    await _location(client, near, 1)
    await _location(client, far, 2)
    await _receive(client, near, sku, 6)
    await _receive(client, far, sku, 4)

    async def reserve(i: int) -> httpx.Response:
        return await client.post(
            "/v1/reservations",
            json={"order_ref": f"{sku}:order:{i}", "lines": [{"sku": sku, "quantity": 1}]},
            headers=SHOP,
        )

    responses = await asyncio.gather(*(reserve(i) for i in range(200)))
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 10 and codes.count(409) == 190, sorted(set(codes))
    refused = next(r for r in responses if r.status_code == 409)
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["type"].endswith("/insufficient-stock")
    assert body["items"] == [{"sku": sku, "requested": 1, "available": 0}]

    r = await client.get(f"/v1/products/{sku}/stock", headers=SHOP)
    stock = r.json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (10, 10, 0)
    assert stock["status"] == "out_of_stock"
    assert {(x["location_id"], x["reserved"]) for x in stock["locations"]} == {(near, 6), (far, 4)}
    async with db.sessionmaker() as s:
        await assert_ledger_is_the_stock(s, sku)
        held = (
            await s.execute(
                text(
                    "SELECT count(*) FROM reservations WHERE order_ref LIKE :p AND state = 'held'"
                ),
                {"p": f"{sku}:order:%"},
            )
        ).scalar_one()
        assert held == 10  # and no claim of a refused request was left behind
        left = (
            await s.execute(
                text("SELECT count(*) FROM reservations WHERE order_ref LIKE :p"),
                {"p": f"{sku}:order:%"},
            )
        ).scalar_one()
        assert left == 10


async def test_concurrent_multi_sku_reservations_in_any_order_never_deadlock(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Orders naming the same SKUs in opposite orders: the SKU locks are taken in one order."""
    skus = [unique("MULTI") for _ in range(3)]
    for sku in skus:
        await _receive(client, "default", sku, 20)

    async def reserve(i: int) -> httpx.Response:
        order = skus if i % 2 else list(reversed(skus))
        return await client.post(
            "/v1/reservations",
            json={
                "order_ref": f"{skus[0]}:m:{i}",
                "lines": [{"sku": s, "quantity": 1 + (i % 3)} for s in order],
            },
            headers=SHOP,
        )

    responses = await asyncio.wait_for(asyncio.gather(*(reserve(i) for i in range(40))), 60)
    ok = [r for r in responses if r.status_code == 201]
    assert all(r.status_code in (201, 409) for r in responses)
    assert ok
    async with db.sessionmaker() as s:
        for sku in skus:
            await assert_ledger_is_the_stock(s, sku)
            reserved = (
                await s.execute(text("SELECT reserved FROM stock_items WHERE sku = :s"), {"s": sku})
            ).scalar_one()
            assert 0 < reserved <= 20
            assert reserved == sum(
                line["requested"] for r in ok for line in r.json()["lines"] if line["sku"] == sku
            )


async def test_allocation_follows_priority_and_splits_a_line(client: httpx.AsyncClient) -> None:
    sku = unique("SPLIT")
    first, second = unique("first"), unique("second")
    await _location(client, second, 20)
    await _location(client, first, 10)
    await _receive(client, second, sku, 5)
    await _receive(client, first, sku, 2)
    ref = unique("split-order")
    r = await client.post(
        "/v1/reservations",
        json={"order_ref": ref, "lines": [{"sku": sku, "quantity": 4}]},
        headers=SHOP,
    )
    assert r.status_code == 201, r.text
    [line] = r.json()["lines"]
    assert (line["requested"], line["allocated"]) == (4, 4)
    assert [(a["location_id"], a["held"]) for a in line["allocations"]] == [(first, 2), (second, 2)]


async def test_reservation_lifecycle_is_idempotent(client: httpx.AsyncClient) -> None:
    sku = unique("LIFE")
    await _receive(client, "default", sku, 8)
    ref = unique("order")
    body = {"order_ref": ref, "lines": [{"sku": sku, "quantity": 2}, {"sku": sku, "quantity": 1}]}
    r = await client.post("/v1/reservations", json=body, headers=SHOP)
    assert r.status_code == 201 and r.json()["state"] == "held", r.text
    assert r.json()["lines"][0]["requested"] == 3  # the two lines of one SKU, merged
    again = await client.post("/v1/reservations", json=body, headers=SHOP)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    other = await client.post(
        "/v1/reservations",
        json={"order_ref": ref, "lines": [{"sku": sku, "quantity": 5}]},
        headers=SHOP,
    )
    assert other.status_code == 409 and other.json()["state"] == "held"

    r = await client.post(f"/v1/reservations/{ref}/confirm", headers=SHOP)
    assert r.status_code == 200 and r.json()["state"] == "confirmed"
    assert r.json()["lines"][0]["allocations"] == [{"location_id": "default", "held": 0, "sold": 3}]
    r = await client.post(f"/v1/reservations/{ref}/confirm", headers=SHOP)
    assert r.status_code == 200  # confirming again changes nothing
    stock = (await client.get(f"/v1/products/{sku}/stock", headers=SHOP)).json()
    assert (stock["on_hand"], stock["reserved"]) == (5, 0)
    r = await client.delete(f"/v1/reservations/{ref}", headers=SHOP)
    assert r.status_code == 409 and r.json()["state"] == "confirmed"

    ref2 = unique("order")
    r = await client.post(
        "/v1/reservations",
        json={"order_ref": ref2, "lines": [{"sku": sku, "quantity": 4}]},
        headers=SHOP,
    )
    assert r.status_code == 201
    for _ in range(2):
        r = await client.delete(f"/v1/reservations/{ref2}", headers=SHOP)
        assert r.status_code == 200 and r.json()["state"] == "released"
    stock = (await client.get(f"/v1/products/{sku}/stock", headers=SHOP)).json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (5, 0, 5)
    r = await client.post(f"/v1/reservations/{ref2}/confirm", headers=SHOP)
    assert r.status_code == 409


async def test_reservation_problems(client: httpx.AsyncClient) -> None:
    sku = unique("PROB")
    await _receive(client, "default", sku, 1)
    r = await client.post(
        "/v1/reservations",
        json={
            "order_ref": unique("o"),
            "lines": [{"sku": sku, "quantity": 2}, {"sku": "NEVER-SEEN", "quantity": 1}],
        },
        headers=SHOP,
    )
    assert r.status_code == 409
    assert r.json()["items"] == [
        {"sku": sku, "requested": 2, "available": 1},
        {"sku": "NEVER-SEEN", "requested": 1, "available": 0},
    ]
    stock = (await client.get(f"/v1/products/{sku}/stock", headers=SHOP)).json()
    assert stock["reserved"] == 0  # all or nothing
    r = await client.post(
        "/v1/reservations",
        json={"order_ref": "x", "lines": [{"sku": sku, "quantity": 0}]},
        headers=SHOP,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/lines/0/quantity"
    r = await client.delete("/v1/reservations/no-such-order", headers=SHOP)
    assert r.status_code == 404 and r.json()["order_ref"] == "no-such-order"
    r = await client.get("/v1/reservations/no-such-order", headers=SHOP)
    assert r.status_code == 404
    r = await client.post(
        "/v1/reservations",
        json={"order_ref": "y", "lines": [{"sku": sku, "quantity": 1}]},
        headers={},
    )
    assert r.status_code == 401


async def test_concurrent_transactions_without_the_combiner_never_oversell(
    client: httpx.AsyncClient, db: Database
) -> None:
    """The database alone serialises the last units: 200 reservations, each its own session and
    transaction (as several API processes would run them), for 10 units at two locations."""
    sku = unique("LOCKS")
    await _receive(client, "default", sku, 7)
    other = unique("loc")
    await _location(client, other, 500)
    await _receive(client, other, sku, 3)
    expires = datetime.now(UTC) + timedelta(minutes=5)

    async def reserve(i: int) -> bool:
        command = Reserve(f"{sku}:tx:{i}", [(sku, 1)], expires, strict=True)
        async with db.sessionmaker() as s, s.begin():
            try:
                await batch.apply(s, [command], default_threshold=5)
            except InsufficientStock as exc:
                assert exc.shortages[0].available == 0
                raise
        return True

    results = await asyncio.gather(*(reserve(i) for i in range(200)), return_exceptions=True)
    assert sum(r is True for r in results) == 10
    assert all(r is True or isinstance(r, InsufficientStock) for r in results)
    async with db.sessionmaker() as s:
        await assert_ledger_is_the_stock(s, sku)
        totals = (
            await s.execute(
                text("SELECT on_hand, reserved FROM stock_items WHERE sku = :s"), {"s": sku}
            )
        ).one()
        assert tuple(totals) == (10, 10)
        claims = (
            await s.execute(
                text("SELECT count(*) FROM reservations WHERE order_ref LIKE :p"),
                {"p": f"{sku}:tx:%"},
            )
        ).scalar_one()
        assert claims == 10  # a refused transaction rolled back its claim


async def test_an_inactive_location_is_never_allocated(client: httpx.AsyncClient) -> None:
    sku = unique("INACTIVE")
    closed = unique("closed")
    await _location(client, closed, 1)
    await _receive(client, closed, sku, 5)
    await _receive(client, "default", sku, 1)
    r = await client.put(
        f"/v1/locations/{closed}",
        json={"name": "Closed", "kind": "store", "priority": 1, "active": False},
        headers=ADMIN,
    )
    assert r.status_code == 200
    r = await client.post(
        "/v1/reservations",
        json={"order_ref": unique("o"), "lines": [{"sku": sku, "quantity": 2}]},
        headers=SHOP,
    )
    assert r.status_code == 409 and r.json()["items"][0]["available"] == 1
    r = await client.post(
        "/v1/reservations",
        json={"order_ref": unique("o"), "lines": [{"sku": sku, "quantity": 1}]},
        headers=SHOP,
    )
    assert r.status_code == 201
    assert r.json()["lines"][0]["allocations"] == [{"location_id": "default", "held": 1, "sold": 0}]

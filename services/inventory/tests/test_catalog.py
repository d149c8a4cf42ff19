"""The catalogue by API and CSV: ProductUpserted on every change and on no no-op, precise
problems naming the field or the CSV line."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from vafa.events.v1 import inventory_pb2
from vafa.kit.db import Database

from .helpers import SHOP, VIEWER, events, unique


def _product(**over: object) -> dict[str, object]:
    return {
        "name": "بوف كور",  # Arabic kaf, as often typed
        "brand": "نشر چشمه",
        "category": "books",
        "tags": ["novel", "classic", "novel"],
        "price": {"amount_minor": 1_250_000, "currency": "IRR"},
        **over,
    }


async def test_put_publishes_on_change_only(client: httpx.AsyncClient, db: Database) -> None:
    sku = unique("BOOK")
    r = await client.put(f"/v1/products/{sku}", json=_product(), headers=SHOP)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "بوف کور" and body["tags"] == ["novel", "classic"]
    r = await client.put(f"/v1/products/{sku}", json=_product(), headers=SHOP)
    assert r.status_code == 200
    r = await client.put(
        f"/v1/products/{sku}",
        json=_product(price={"amount_minor": 9, "currency": "IRR"}),
        headers=SHOP,
    )
    assert r.status_code == 200 and r.json()["price"]["amount_minor"] == 9
    async with db.sessionmaker() as s:
        msgs = await events(s, sku)
        topics = (
            await s.execute(text("SELECT DISTINCT topic FROM outbox WHERE key = :k"), {"k": sku})
        ).scalars()
        assert list(topics) == ["inventory.catalog.v1"]
    assert [type(m) for m in msgs] == [inventory_pb2.ProductUpserted] * 2  # not the no-op
    assert isinstance(msgs[1], inventory_pb2.ProductUpserted)
    assert (msgs[1].price.amount_minor, msgs[1].price.currency, list(msgs[1].tags)) == (
        9,
        "IRR",
        ["novel", "classic"],
    )
    r = await client.get(f"/v1/products/{sku}", headers=VIEWER)
    assert r.status_code == 200 and r.json()["brand"] == "نشر چشمه"


async def test_product_validation_names_the_field(client: httpx.AsyncClient) -> None:
    r = await client.put(
        "/v1/products/X-1",
        json=_product(price={"amount_minor": 1, "currency": "XXQ"}),
        headers=SHOP,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["pointer"] == "/body/price/currency"
    r = await client.put("/v1/products/X-1", json=_product(name="   "), headers=SHOP)
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/name"
    r = await client.put("/v1/products/X-1", json=_product(), headers=VIEWER)
    assert r.status_code == 403


async def test_bulk_upsert_and_duplicate_sku(client: httpx.AsyncClient) -> None:
    a, b = unique("BULK"), unique("BULK")
    r = await client.post(
        "/v1/products/bulk",
        json={"products": [{"sku": a, **_product()}, {"sku": b, **_product()}]},
        headers=SHOP,
    )
    assert r.status_code == 200, r.text
    assert [x["outcome"] for x in r.json()["results"]] == ["created", "created"]
    r = await client.post(
        "/v1/products/bulk",
        json={"products": [{"sku": a, **_product()}, {"sku": b, **_product(active=False)}]},
        headers=SHOP,
    )
    assert [x["outcome"] for x in r.json()["results"]] == ["unchanged", "updated"]
    r = await client.post(
        "/v1/products/bulk",
        json={"products": [{"sku": a, **_product()}, {"sku": a, **_product()}]},
        headers=SHOP,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["pointer"] == "/body/products/1/sku"


async def test_csv_import_reports_rows_and_imports_the_valid_ones(
    client: httpx.AsyncClient,
) -> None:
    ok1, ok2, bad = unique("CSV"), unique("CSV"), unique("CSV")
    csv_text = (
        "sku,name,price,currency,brand,tags,active\n"
        f"{ok1},شازده کوچولو,۱۲۵٬۰۰۰,IRR,Ofogh,کودک|داستان,بله\n"
        f'{ok2},"Gone, with wind",12.50,USD,,drama;classic,yes\n'
        f"{bad},Too precise,12.505,USD,,,\n"
        f"{bad}-2,No currency,10,ZZZ,,,\n"
        f"{bad}-3,,10,USD,,,\n"
        f"{bad}-4,Bad flag,10,USD,,,maybe\n"
        f"{ok1},Twice,1,USD,,,\n"
        "\n"
        f"{bad}-5,short row\n"
    )
    r = await client.post(
        "/v1/products/import",
        content=csv_text.encode(),
        headers={**SHOP, "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["rows"], report["created"], report["updated"], report["unchanged"]) == (
        8,
        2,
        0,
        0,
    )
    assert [(e["row"], e["column"]) for e in report["errors"]] == [
        (4, "price"),
        (5, "currency"),
        (6, "name"),
        (7, "active"),
        (8, "sku"),
        (10, None),
    ]
    p = (await client.get(f"/v1/products/{ok1}", headers=SHOP)).json()
    assert (p["price"]["amount_minor"], p["tags"], p["active"]) == (
        125000,
        ["کودک", "داستان"],
        True,
    )
    p = (await client.get(f"/v1/products/{ok2}", headers=SHOP)).json()
    assert (p["name"], p["price"]["amount_minor"], p["tags"]) == (
        "Gone, with wind",
        1250,
        ["drama", "classic"],
    )
    r = await client.get(f"/v1/products/{bad}", headers=SHOP)
    assert r.status_code == 404


async def test_csv_problems(client: httpx.AsyncClient) -> None:
    headers = {**SHOP, "content-type": "text/csv"}
    r = await client.post("/v1/products/import", content=b"sku,name,cost\nA,B,1\n", headers=headers)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["missing"] == ["price", "currency"] and r.json()["unknown"] == ["cost"]
    r = await client.post("/v1/products/import", content=b"\xff\xfe\x00", headers=headers)
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"]
    r = await client.post(
        "/v1/products/import", content=b"sku,name,price,currency\nA,,1,USD\n", headers=headers
    )
    assert r.status_code == 422 and r.json()["errors"][0]["row"] == 2

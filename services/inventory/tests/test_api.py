import httpx

from vafa.kit.testing.plugin import principal_headers

SHOP = principal_headers("shop", "storefront", "shop")
VIEWER = principal_headers("staff", "v", "viewer")


async def test_unknown_sku_is_a_404_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/products/NOPE-404/stock", headers=VIEWER)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (
        body["status"] == 404
        and body["sku"] == "NOPE-404"
        and body["instance"] == "/v1/products/NOPE-404/stock"
    )


async def test_set_then_read_stock(client: httpx.AsyncClient) -> None:
    r = await client.put(
        "/v1/products/API-1/stock", json={"on_hand": 3, "low_stock_threshold": 3}, headers=SHOP
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "low_stock"
    r = await client.get("/v1/products/API-1/stock", headers=VIEWER)
    assert r.json()["on_hand"] == 3


async def test_viewer_cannot_set_and_anonymous_cannot_read(client: httpx.AsyncClient) -> None:
    r = await client.put("/v1/products/API-2/stock", json={"on_hand": 3}, headers=VIEWER)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    r = await client.get("/v1/products/API-2/stock")
    assert r.status_code == 401


async def test_negative_stock_is_a_validation_problem_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    r = await client.put("/v1/products/API-3/stock", json={"on_hand": -1}, headers=SHOP)
    assert r.status_code == 422
    body = r.json()
    assert body["errors"][0]["pointer"] == "/body/on_hand"


async def test_wrong_method_and_oversized_body(client: httpx.AsyncClient) -> None:
    r = await client.delete("/v1/products/API-3/stock", headers=SHOP)
    assert r.status_code == 405 and r.json()["status"] == 405
    r = await client.put(
        "/v1/products/API-3/stock",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={**SHOP, "content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["status"] == 413

"""The club through the gateway only: a shopper joins, buys, sees their points, redeems a
reward for a coupon and the shop consumes it at checkout; a member's token never reaches
another customer's file; the shop's stock answers availability and holds for a placed order."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.helpers import customer_by_email, points_reach
from vafa.kit.testing.poll import eventually
from vafa.kit.testing.shop import Line, ShopSimulator

GATEWAY_ONLY = {"authorization": ""}  # a request with no credentials of the admin client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_join_buy_redeem_and_check_out(
    gateway: httpx.AsyncClient, shop: ShopSimulator, tag: str
) -> None:
    customer = shop.persian_customer(1, tag=tag)
    joined = await gateway.post(
        "/v1/club/signup",
        json={
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "email": customer.email,
            "password": f"pw-{tag}-long-enough",
        },
        headers=GATEWAY_ONLY,
    )
    assert joined.status_code == 201, joined.text
    member_id = joined.json()["customer_id"]

    login = await gateway.post(
        "/v1/club/login",
        json={"identifier": customer.email.upper(), "password": f"pw-{tag}-long-enough"},
        headers=GATEWAY_ONLY,
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    me = await gateway.get("/v1/club/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["id"] == member_id

    # The shop's order for the same email lands on the member's file and earns points.
    body = shop.shopify_order(int(tag, 16) % 10**12, customer, [Line(f"BOOK-{tag}", 2, "30.00")])
    raw, headers = shop.shopify_delivery("orders/paid", body, event_id=f"evt-{tag}")
    r = await gateway.post("/v1/webhooks/shopify", content=raw, headers=headers)
    assert r.status_code == 202, r.text
    assert (await customer_by_email(gateway, customer.email))["id"] == member_id
    await points_reach(gateway, member_id, 60)
    mine = await gateway.get("/v1/club/me/points", headers=bearer(token))
    assert mine.status_code == 200 and mine.json()["balance"] == 60

    reward = await gateway.post(
        "/v1/loyalty/rewards",
        json={
            "name": f"۱۰٪ تخفیف {tag}",
            "kind": "percent_discount",
            "percent_off": 10,
            "points_price": 50,
            "stock": 1,
        },
    )
    assert reward.status_code == 201, reward.text
    redeem = await gateway.post(
        "/v1/club/me/redemptions",
        json={"reward_id": reward.json()["id"]},
        headers={**bearer(token), "idempotency-key": f"r-{tag}"},
    )
    assert redeem.status_code == 201, redeem.text
    assert redeem.json()["balance"] == 10
    code = redeem.json()["coupon"]["code"]
    again = await gateway.post(
        "/v1/club/me/redemptions",
        json={"reward_id": reward.json()["id"]},
        headers={**bearer(token), "idempotency-key": f"r-{tag}"},
    )
    assert again.json()["coupon"]["code"] == code  # a retried request, not a second coupon

    order_ref = f"shopify:vafa-test:{tag}"
    used = await gateway.post(f"/v1/coupons/{code}/consume", json={"order_ref": order_ref})
    assert used.status_code == 200, used.text
    other = await gateway.post(f"/v1/coupons/{code}/consume", json={"order_ref": order_ref + "x"})
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["type"].endswith("coupon-already-used")


async def test_a_member_token_reaches_only_its_own_file(
    gateway: httpx.AsyncClient, shop: ShopSimulator, tag: str
) -> None:
    tokens: list[tuple[str, str]] = []
    emails: list[str] = []
    for n in (1, 2):
        c = shop.armenian_customer(n, tag=tag)
        emails.append(c.email)
        r = await gateway.post(
            "/v1/club/signup",
            json={"email": c.email, "password": f"pw-{tag}-{n}-long"},
            headers=GATEWAY_ONLY,
        )
        assert r.status_code == 201, r.text
        tokens.append((r.json()["customer_id"], r.json()["access_token"]))
    (a_id, a_token), (b_id, _) = tokens
    assert (await gateway.get("/v1/club/me", headers=bearer(a_token))).json()["id"] == a_id
    for path in (f"/v1/customers/{b_id}", f"/v1/customers/{b_id}/points"):
        r = await gateway.get(path, headers=bearer(a_token))
        assert r.status_code in (403, 404), (path, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert emails[1] not in r.text and "balance" not in r.json()
    anonymous = await gateway.get("/v1/club/me", headers=GATEWAY_ONLY)
    assert anonymous.status_code == 401


async def test_availability_follows_a_placed_and_cancelled_order(
    gateway: httpx.AsyncClient, shop: ShopSimulator, tag: str
) -> None:
    sku = f"TEA-{tag}"
    product = await gateway.put(
        f"/v1/products/{sku}",
        json={
            "name": "چای لاهیجان",
            "brand": "Lahijan",
            "category": "tea",
            "tags": ["green"],
            "price": {"amount_minor": 1_250_000, "currency": "IRR"},
        },
    )
    assert product.status_code in (200, 201), product.text
    assert (await gateway.put(f"/v1/products/{sku}/stock", json={"on_hand": 3})).status_code == 200

    async def available() -> dict[str, Any]:
        r = await gateway.post(
            "/v1/availability",
            json={"skus": [sku, f"NONE-{uuid.uuid4().hex[:6]}"]},
            headers=GATEWAY_ONLY,  # the storefront asks without credentials
        )
        assert r.status_code == 200, r.text
        return {i["sku"]: i for i in r.json()["items"]}

    first = await available()
    assert first[sku]["available"] == 3 and first[sku]["known"] is True
    customer = shop.armenian_customer(3, tag=tag)
    order_id = int(tag, 16) % 10**12
    body = shop.shopify_order(order_id, customer, [Line(sku, 3, "12.50")])
    raw, headers = shop.shopify_delivery("orders/create", body, event_id=f"c-{tag}")
    r = await gateway.post("/v1/webhooks/shopify", content=raw, headers=headers)
    assert r.status_code == 202, r.text

    async def held() -> bool:
        item = (await available())[sku]
        return item["available"] == 0 and item["status"] == "out_of_stock"

    await eventually(held, what="the placed order holds the last 3")
    raw, headers = shop.shopify_delivery("orders/cancelled", body, event_id=f"x-{tag}")
    r = await gateway.post("/v1/webhooks/shopify", content=raw, headers=headers)
    assert r.status_code == 202, r.text

    async def released() -> bool:
        return (await available())[sku]["available"] == 3

    await eventually(released, what="the cancelled order's hold released")

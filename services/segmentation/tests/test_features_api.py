"""GET /v1/customers/{customer_id}/features on the real app and database."""

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import text

from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.segmentation.config import Settings
from vafa.segmentation.features.handlers import customers_handler, purchases_handler

from .features_fixtures import NOW, line, order, purchase, registered

VIEWER = principal_headers("staff", "v", "viewer")
PROBLEM = "application/problem+json"
SETTINGS = Settings()


async def test_staff_read_the_features_and_what_was_bought(
    client: httpx.AsyncClient, db: Database
) -> None:
    c = uuid.uuid4()
    sku_a, sku_b = f"A-{c.hex[:6]}", f"B-{c.hex[:6]}"
    async with db.sessionmaker() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO products (sku, brand, category, tags, updated_at) VALUES "
                "(:a, 'نشر چشمه', 'کتاب فانتزی', '{فانتزی,رمان}', now()), "
                "(:b, 'Acme', 'toys', '{فانتزی}', now())"
            ),
            {"a": sku_a, "b": sku_b},
        )
        await customers_handler(SETTINGS, clock=lambda: NOW)(
            s, [registered(c, city="اصفهان", tags=["کتاب‌خوان"])]
        )
        await purchases_handler(SETTINGS, clock=lambda: NOW)(
            s,
            [
                purchase(
                    c,
                    "paid",
                    order(
                        f"api:{c}:1",
                        9000,
                        placed_at=NOW - timedelta(days=2),
                        lines=[line("1", sku_a, 6000, quantity=2), line("2", sku_b, 3000)],
                        currency="IRR",
                    ),
                ),
                purchase(
                    c,
                    "paid",
                    order(
                        f"api:{c}:2",
                        2000,
                        placed_at=NOW - timedelta(days=1),
                        lines=[line("1", sku_a, 2000)],
                        currency="IRR",
                    ),
                ),
            ],
        )

    r = await client.get(f"/v1/customers/{c}/features", headers=VIEWER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["customer_id"] == str(c)
    assert (body["city"], body["tags"], body["removed"]) == ("اصفهان", ["کتاب‌خوان"], False)
    assert body["orders_count"] == 2
    assert body["total_spent"] == {"amount_minor": 11000, "currency": "IRR"}
    assert body["avg_order_value"] == {"amount_minor": 5500, "currency": "IRR"}
    assert body["spent_30d"] == {"amount_minor": 11000, "currency": "IRR"}
    assert body["clv_value"] is None
    bought = body["purchases"]
    assert bought["categories"] == [
        {
            "value": "کتاب فانتزی",
            "orders": 2,
            "quantity": 3,
            "spend": {"amount_minor": 8000, "currency": "IRR"},
        },
        {
            "value": "toys",
            "orders": 1,
            "quantity": 1,
            "spend": {"amount_minor": 3000, "currency": "IRR"},
        },
    ]
    assert [b["value"] for b in bought["brands"]] == ["نشر چشمه", "Acme"]
    assert bought["tags"][0] == {
        "value": "فانتزی",
        "orders": 2,
        "quantity": 4,
        "spend": {"amount_minor": 11000, "currency": "IRR"},
    }
    assert bought["tags"][1]["value"] == "رمان"

    async with db.sessionmaker() as s, s.begin():
        for table in ("orders", "purchase_lines", "features", "identities", "products"):
            await s.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names


async def test_unknown_customer_is_a_404_problem(client: httpx.AsyncClient) -> None:
    c = uuid.uuid4()
    r = await client.get(f"/v1/customers/{c}/features", headers=VIEWER)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["customer_id"] == str(c)


async def test_the_route_needs_a_staff_principal(client: httpx.AsyncClient) -> None:
    c = uuid.uuid4()
    r = await client.get(f"/v1/customers/{c}/features")
    assert r.status_code == 401
    member = principal_headers("member", str(c), "")
    assert (await client.get(f"/v1/customers/{c}/features", headers=member)).status_code == 403
    bad = await client.get("/v1/customers/not-a-uuid/features", headers=VIEWER)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["pointer"] == "/path/customer_id"

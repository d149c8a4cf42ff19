"""`make demo`: a realistic afternoon of two shops, sent through the gateway as signed webhooks,
then a summary of what the platform made of it.

- Ketab (a Tehran bookshop on WooCommerce, prices in rial) and Ani Crafts (a Yerevan shop on
  Shopify, prices in dram); customers from Faker's fa_IR and hy_AM locales, phones as people
  type them (0912..., Persian digits, +374 ...).
- Orders placed then paid, one delivered twice by the platform, one cancelled, one refunded.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from stack import ENV_FILE, ensure_env  # noqa: E402

from vafa.kit.testing.shop import Line, ShopSimulator  # noqa: E402

GATEWAY = f"http://127.0.0.1:{os.environ.get('VAFA_GATEWAY_PORT', '8000')}"

# (sku, title, price in major units)
BOOKS = [
    ("KTB-SHAHNAMEH", "شاهنامه فردوسی", "4500000"),
    ("KTB-MASNAVI", "مثنوی معنوی", "3200000"),
    ("KTB-BOOF-KOOR", "بوف کور", "1200000"),
    ("KTB-KELIDAR", "کلیدر", "9800000"),
]
CRAFTS = [
    ("ANI-CARPET-S", "Գորգ, փոքր", "48000"),
    ("ANI-DUDUK", "Դուդուկ", "35000"),
    ("ANI-BRANDY-10", "Կոնյակ 10 տարեկան", "22000"),
    ("ANI-LAVASH-BOX", "Լավաշ, տուփ", "3500"),
]


async def main() -> None:
    env = ensure_env()
    run = str(int(time.time()))[-6:]
    # A new afternoon each run: new buyers (a phone seen before would, rightly, be the same
    # person, and their orders would join that file).
    shop = ShopSimulator(
        env,
        shopify_domain="ani-crafts.myshopify.com",
        woo_source="https://ketab.example.ir",
        seed=int(run),
    )
    console = Console()
    headers = {"authorization": f"Bearer {env['VAFA_ADMIN_API_KEY']}"}
    async with httpx.AsyncClient(base_url=GATEWAY, headers=headers, timeout=15) as api:
        for sku, _, _ in BOOKS + CRAFTS:
            r = await api.put(
                f"/v1/products/{sku}/stock", json={"on_hand": 50, "low_stock_threshold": 10}
            )
            r.raise_for_status()

        sent = accepted = 0
        customers = []

        async def deliver(raw: bytes, hdrs: dict[str, str], platform: str) -> None:
            nonlocal sent, accepted
            r = await api.post(f"/v1/webhooks/{platform}", content=raw, headers=hdrs)
            sent += 1
            accepted += r.status_code == 202
            if r.status_code != 202:
                console.print(f"[red]{platform} webhook refused: {r.status_code} {r.text}")

        for i in range(8):
            c = shop.persian_customer(int(run) * 10 + i, tag=run)
            customers.append(c)
            lines = [
                Line(*pick)
                for pick in (
                    (BOOKS[i % 4][0], 1 + i % 2, BOOKS[i % 4][2]),
                    (BOOKS[(i + 1) % 4][0], 1, BOOKS[(i + 1) % 4][2]),
                )
            ]
            oid = int(run) * 100 + i
            for status in ("pending", "processing"):
                body = shop.woo_order(oid, c, lines, status=status, currency="IRR")
                await deliver(
                    *shop.woo_delivery(
                        "order.updated" if status == "processing" else "order.created",
                        body,
                        delivery_id=f"{run}-{i}-{status}",
                    ),
                    "woocommerce",
                )
            if i == 7:  # a customer changes their mind
                body = shop.woo_order(oid, c, lines, status="cancelled", currency="IRR")
                await deliver(
                    *shop.woo_delivery("order.updated", body, delivery_id=f"{run}-{i}-cancelled"),
                    "woocommerce",
                )

        for i in range(8):
            c = shop.armenian_customer(int(run) * 10 + i, tag=run)
            customers.append(c)
            lines = [
                Line(CRAFTS[i % 4][0], 1 + i % 3, CRAFTS[i % 4][2]),
                Line(CRAFTS[3][0], 2, CRAFTS[3][2]),
            ]
            oid = int(run) * 1000 + i
            body = shop.shopify_order(oid, c, lines, currency="AMD")
            await deliver(
                *shop.shopify_delivery("orders/create", body, event_id=f"{run}-c-{i}"), "shopify"
            )
            paid = shop.shopify_delivery("orders/paid", body, event_id=f"{run}-p-{i}")
            await deliver(*paid, "shopify")
            if i == 0:  # Shopify retries a delivery it thinks failed: same event id
                await deliver(*paid, "shopify")

        console.print(f"Sent {sent} signed webhooks; the gateway accepted {accepted}.")
        console.print("Waiting for profile, loyalty and inventory to catch up...")
        await asyncio.sleep(3)

        table = Table(title="Customers and their points", show_lines=False)
        for col in ("name", "city", "phone on file", "orders", "points"):
            table.add_column(col)
        for c in customers:
            file = None
            for _ in range(50):
                r = await api.get("/v1/customers/lookup", params={"email": c.email})
                if r.status_code == 200:
                    file = r.json()
                    break
                await asyncio.sleep(0.2)
            if file is None:
                table.add_row(f"{c.first_name} {c.last_name}", c.city, c.phone, "?", "not yet")
                continue
            points = (await api.get(f"/v1/customers/{file['id']}/points")).json()
            phones = ", ".join(file["identities"]["phones"]) or "-"
            table.add_row(
                f"{file['first_name']} {file['last_name']}",
                c.city,
                phones,
                str(file.get("order_count", "")),
                str(points.get("balance")),
            )
        console.print(table)

        stock = Table(title="Stock after the afternoon")
        for col in ("sku", "title", "on hand", "status"):
            stock.add_column(col)
        for sku, title, _ in BOOKS + CRAFTS:
            s = (await api.get(f"/v1/products/{sku}/stock")).json()
            stock.add_row(sku, title, str(s["on_hand"]), s["status"])
        console.print(stock)

        # A segment that follows the orders by itself: created once, then kept up to date.
        definition = {"field": "orders_count", "op": "gte", "value": 2}
        r = await api.post(
            "/v1/segments",
            json={"key": "demo-repeat-buyers", "name": "Repeat buyers", "definition": definition},
        )
        if r.status_code == 409:
            listed = (await api.get("/v1/segments")).json()
            segment = next(x for x in listed if x["key"] == "demo-repeat-buyers")
        else:
            segment = r.json()
        members = (await api.get(f"/v1/segments/{segment['id']}/members")).json()["items"]
        console.print(
            f"Segment [bold]{segment['name']}[/bold] (orders_count >= 2): "
            f"{len(members)} on the first page; try /v1/segments/{segment['id']}/explain/<id>"
        )
        console.print(f"Explore: {GATEWAY}/docs  (API key in {ENV_FILE})")


if __name__ == "__main__":
    asyncio.run(main())

"""The catalogue: products upserted one at a time, in bulk or from a CSV, all through
`upsert_many` (one statement however many products), which publishes `ProductUpserted` on
inventory.catalog.v1 for each product that was created or changed, and for no other."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, inventory_pb2
from vafa.inventory.catalog.schemas import Money, Outcome, ProductBulkItem, ProductRead
from vafa.inventory.events import CATALOG_TOPIC, outbox
from vafa.kit.errors import NotFound
from vafa.kit.outbox import OutboxEvent

# Rows in sku order, so two bulk upserts overlapping in SKUs lock them in one order. A row
# equal to the stored one is not updated (nor returned): a no-op upsert publishes nothing.
_UPSERT = text(
    "INSERT INTO products (sku, product_id, name, brand, category, tags, price_minor, currency, active) "
    "SELECT sku, product_id, name, brand, category, tags, price_minor, currency, active FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x("
    "sku text, product_id text, name text, brand text, category text, tags text[], "
    "price_minor bigint, currency text, active boolean) ORDER BY sku "
    "ON CONFLICT (sku) DO UPDATE SET product_id = EXCLUDED.product_id, name = EXCLUDED.name, "
    "brand = EXCLUDED.brand, category = EXCLUDED.category, tags = EXCLUDED.tags, "
    "price_minor = EXCLUDED.price_minor, currency = EXCLUDED.currency, "
    "active = EXCLUDED.active, updated_at = now() "
    "WHERE (products.product_id, products.name, products.brand, products.category, "
    "products.tags, products.price_minor, products.currency, products.active) "
    "IS DISTINCT FROM (EXCLUDED.product_id, EXCLUDED.name, EXCLUDED.brand, EXCLUDED.category, "
    "EXCLUDED.tags, EXCLUDED.price_minor, EXCLUDED.currency, EXCLUDED.active) "
    "RETURNING sku, product_id, name, brand, category, tags, price_minor, currency, active, updated_at, (xmax = 0) AS created"
)


def _event(row: Any, updated_at: datetime) -> inventory_pb2.ProductUpserted:
    ts = Timestamp()
    ts.FromDatetime(updated_at)
    r = row
    return inventory_pb2.ProductUpserted(
        sku=r.sku,
        product_id=r.product_id,
        name=r.name,
        brand=r.brand,
        category=r.category,
        tags=list(r.tags),
        price=common_pb2.Money(
            amount_minor=r.price_minor,
            currency=r.currency,
        ),
        active=r.active,
        updated_at=ts,
    )


async def upsert_many(session: AsyncSession, products: Sequence[ProductBulkItem]) -> list[Outcome]:
    """Creates or updates the products (SKUs unique, checked by the caller); their outcomes in
    the order given."""
    if not products:
        return []
    rows = [
        {
            "sku": p.sku,
            "product_id": p.product_id,
            "name": p.name,
            "brand": p.brand,
            "category": p.category,
            "tags": p.tags,
            "price_minor": p.price.amount_minor,
            "currency": p.price.currency,
            "active": p.active,
        }
        for p in products
    ]
    changed: dict[str, Outcome] = {}
    events = []
    for row in await session.execute(_UPSERT, {"rows": json.dumps(rows)}):
        changed[row.sku] = "created" if row.created else "updated"
        events.append(OutboxEvent(CATALOG_TOPIC, row.sku, _event(row, row.updated_at)))
    await outbox.add_many(session, events)
    return [changed.get(p.sku, "unchanged") for p in products]


_GET = text(
    "SELECT sku, product_id, name, brand, category, tags, price_minor, currency, active, "
    "created_at, updated_at FROM products WHERE sku = :sku"
)


async def get(session: AsyncSession, sku: str) -> ProductRead:
    row = (await session.execute(_GET, {"sku": sku})).first()
    if row is None:
        raise NotFound(f"There is no product with SKU {sku!r}.", sku=sku)
    return ProductRead(
        sku=row.sku,
        product_id=row.product_id,
        name=row.name,
        brand=row.brand,
        category=row.category,
        tags=list(row.tags),
        price=Money(amount_minor=row.price_minor, currency=row.currency),
        active=row.active,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )

"""The local product table: category, brand and tags for the earning rules, as
inventory.catalog.v1 ProductUpserted tells them (the latest `updated_at` wins, so an old
event redelivered after a newer one changes nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class ProductRow:
    sku: str
    product_id: str
    name: str
    brand: str
    category: str
    tags: list[str]
    active: bool
    updated_at: datetime | None


_UPSERT = text(
    "INSERT INTO products (sku, product_id, name, brand, category, tags, active, updated_at) "
    "SELECT v.sku, v.product_id, v.name, NULLIF(v.brand, ''), NULLIF(v.category, ''), "
    "CAST(v.tags AS text[]), v.active, v.updated_at "
    "FROM unnest(CAST(:skus AS text[]), CAST(:product_ids AS text[]), CAST(:names AS text[]), "
    "CAST(:brands AS text[]), CAST(:categories AS text[]), CAST(:tags AS text[]), "
    "CAST(:actives AS boolean[]), CAST(:updated AS timestamptz[])) "
    "AS v(sku, product_id, name, brand, category, tags, active, updated_at) "
    "ON CONFLICT (sku) DO UPDATE SET product_id = EXCLUDED.product_id, name = EXCLUDED.name, "
    "brand = EXCLUDED.brand, category = EXCLUDED.category, tags = EXCLUDED.tags, "
    "active = EXCLUDED.active, updated_at = EXCLUDED.updated_at "
    "WHERE products.updated_at IS NULL OR EXCLUDED.updated_at IS NULL "
    "OR EXCLUDED.updated_at >= products.updated_at"
)


async def upsert(session: AsyncSession, rows: Sequence[ProductRow]) -> None:
    oldest = datetime.min.replace(tzinfo=UTC)
    latest: dict[str, ProductRow] = {}
    for row in rows:  # one row per sku in a statement; the newest of the batch
        have = latest.get(row.sku)
        if have is None or (row.updated_at or oldest) >= (have.updated_at or oldest):
            latest[row.sku] = row
    if not latest:
        return
    rs = list(latest.values())
    # tags travel as a Postgres array literal per row, so unnest keeps one row per product.
    await session.execute(
        _UPSERT,
        {
            "skus": [r.sku for r in rs],
            "product_ids": [r.product_id for r in rs],
            "names": [r.name for r in rs],
            "brands": [r.brand for r in rs],
            "categories": [r.category for r in rs],
            "tags": [_array_literal(r.tags) for r in rs],
            "actives": [r.active for r in rs],
            "updated": [r.updated_at for r in rs],
        },
    )


def _array_literal(values: Sequence[str]) -> str:
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(quoted) + "}"

"""A purchase and a product update of the same SKU at the same moment, in real concurrent
transactions: whichever commits first, the line ends up labelled with the product."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from vafa.events.v1 import inventory_pb2
from vafa.kit.db import Database
from vafa.segmentation.config import Settings
from vafa.segmentation.features.handlers import catalog_handler, purchases_handler

from .features_fixtures import NOW, envelope, line, order, purchase, ts

SETTINGS = Settings()
PURCHASES = purchases_handler(SETTINGS, clock=lambda: NOW)
CATALOG = catalog_handler(SETTINGS, clock=lambda: NOW)


@pytest.fixture
async def clean(db: Database) -> AsyncIterator[None]:
    yield
    async with db.sessionmaker() as s, s.begin():
        for table in ("orders", "purchase_lines", "features", "products"):
            await s.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - constant names


def product(sku: str) -> object:
    return envelope(
        inventory_pb2.ProductUpserted(
            sku=sku, brand="Acme", category="books", tags=["fantasy"], updated_at=ts(NOW)
        )
    )


async def brand_of(db: Database, customer: uuid.UUID) -> tuple[str, str]:
    async with db.sessionmaker() as s:
        row = (
            await s.execute(
                text("SELECT brand, category FROM purchase_lines WHERE customer_id = :c"),
                {"c": customer},
            )
        ).one()
    return row.brand, row.category


@pytest.mark.parametrize("first", ["purchase", "catalogue"])
async def test_purchase_and_product_update_at_once(db: Database, clean: None, first: str) -> None:
    c = uuid.uuid4()
    sku = f"C-{c.hex[:8]}"
    bought = (
        PURCHASES,
        [
            purchase(
                c,
                "paid",
                order(
                    f"cc:{c}",
                    100,
                    placed_at=NOW - timedelta(days=1),
                    lines=[line("1", sku, 100, vendor="Vendor")],
                ),
            )
        ],
    )
    labelled = (CATALOG, [product(sku)])
    one, two = (bought, labelled) if first == "purchase" else (labelled, bought)

    async def run(step: tuple[object, list[object]], applied: asyncio.Event) -> None:
        handler, events = step
        async with db.sessionmaker() as s, s.begin():
            await handler(s, events)  # type: ignore[operator]
            applied.set()  # applied, not committed yet
            await asyncio.sleep(0.3)

    first_applied, second_applied = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(run(one, first_applied))
    await first_applied.wait()
    waiter = asyncio.create_task(run(two, second_applied))
    await asyncio.sleep(0.15)
    # The second transaction waits for the first's lock instead of missing its rows.
    assert not second_applied.is_set()
    await asyncio.gather(holder, waiter)
    assert await brand_of(db, c) == ("Acme", "books")

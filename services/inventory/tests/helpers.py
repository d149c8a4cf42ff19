"""Shared test helpers: unique names, the outbox's events, the ledger against the levels."""

from __future__ import annotations

import uuid

from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit import cloudevents
from vafa.kit.testing.plugin import principal_headers

SHOP = principal_headers("shop", "storefront", "shop")
ADMIN = principal_headers("staff", "boss", "admin")
VIEWER = principal_headers("staff", "v", "viewer")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def events(session: AsyncSession, key: str) -> list[Message]:
    rows = (
        await session.execute(
            text("SELECT headers, payload FROM outbox WHERE key = :key ORDER BY id"), {"key": key}
        )
    ).all()
    return [
        cloudevents.decode([(k, v.encode()) for k, v in r.headers], r.payload).message for r in rows
    ]


async def assert_ledger_is_the_stock(session: AsyncSession, sku: str) -> None:
    """Per location: on_hand is the sum of the movements' deltas, reserved the sum of their
    reserved deltas, and the SKU's totals are the sum of its locations."""
    levels = {
        (loc, on_hand, reserved)
        for loc, on_hand, reserved in await session.execute(
            text("SELECT location_id, on_hand, reserved FROM stock_levels WHERE sku = :s"),
            {"s": sku},
        )
    }
    ledger = {
        (loc, int(d), int(r))
        for loc, d, r in await session.execute(
            text(
                "SELECT location_id, sum(delta), sum(reserved_delta) FROM stock_movements "
                "WHERE sku = :s GROUP BY location_id"
            ),
            {"s": sku},
        )
    }
    assert levels == ledger
    totals = (
        await session.execute(
            text("SELECT on_hand, reserved FROM stock_items WHERE sku = :s"), {"s": sku}
        )
    ).one()
    assert tuple(totals) == (sum(x[1] for x in levels), sum(x[2] for x in levels))
    assert all(x[1] >= 0 and x[2] >= 0 for x in levels)

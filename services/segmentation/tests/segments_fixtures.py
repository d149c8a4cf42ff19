"""Rows for the segments tests: the features helper's consumer fills `features` and
`purchase_lines` from events in production; here they are inserted directly, and the tests
call reevaluate_customers themselves where that consumer would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.segmentation.models import Features, Identity, PurchaseLine

NOW = datetime(2030, 6, 15, 12, tzinfo=UTC)


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def customer(session: AsyncSession, **features: Any) -> uuid.UUID:
    """A feature row (defaults for everything not given); returns the customer id."""
    cid = features.pop("customer_id", None) or uuid.uuid4()
    await session.execute(insert(Features).values(customer_id=cid, **features))
    return cid


async def set_features(session: AsyncSession, customer_id: uuid.UUID, **features: Any) -> None:
    await session.execute(
        update(Features).where(Features.customer_id == customer_id).values(**features)
    )


async def purchase(
    session: AsyncSession,
    customer_id: uuid.UUID,
    *,
    at: datetime = NOW - timedelta(days=1),
    sku: str = "sku-1",
    brand: str = "",
    category: str = "",
    tags: list[str] | None = None,
    quantity: int = 1,
    amount: int = 100_000,
    order_ref: str | None = None,
    discounted: bool = False,
) -> str:
    """One purchase line (its own order unless `order_ref` is given); returns the order ref."""
    ref = order_ref or unique("order-")
    await session.execute(
        insert(PurchaseLine).values(
            order_ref=ref,
            line_id=unique("line-"),
            customer_id=customer_id,
            purchased_at=at,
            sku=sku,
            brand=brand,
            category=category,
            tags=tags or [],
            quantity=quantity,
            amount_minor=amount,
            discounted=discounted,
        )
    )
    return ref


async def identity(session: AsyncSession, value: str, customer_id: uuid.UUID) -> None:
    await session.execute(insert(Identity).values(value=value, customer_id=customer_id))

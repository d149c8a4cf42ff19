"""Rows for the score tests, inserted directly (the feature store's own consumers are tested
elsewhere): a customer's features and their orders."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.db import Database
from vafa.segmentation.models import ClusterRun, ClvModel, Features, Order

SCORE_TABLES = (Features.__table__, Order.__table__, ClvModel.__table__, ClusterRun.__table__)


async def add_customer(session: AsyncSession, **values: Any) -> uuid.UUID:
    """A features row; `values` are column values (customer_id is made up when missing)."""
    values.setdefault("customer_id", uuid.uuid4())
    await session.execute(insert(Features).values(**values))
    return uuid.UUID(str(values["customer_id"]))


async def add_order(
    session: AsyncSession,
    customer_id: uuid.UUID,
    placed_at: datetime,
    total_minor: int,
    *,
    status: str = "paid",
    currency: str = "USD",
    refunded_minor: int = 0,
    order_ref: str | None = None,
) -> str:
    ref = order_ref or f"o-{uuid.uuid4().hex[:12]}"
    await session.execute(
        text(
            "INSERT INTO orders (order_ref, customer_id, status, placed_at, paid_at, currency,"
            " total_minor, refunded_minor) VALUES (:ref, :c, :s, :p, :p, :cur, :t, :rf)"
        ),
        {
            "ref": ref,
            "c": customer_id,
            "s": status,
            "p": placed_at,
            "cur": currency,
            "t": total_minor,
            "rf": refunded_minor,
        },
    )
    return ref


async def clear_scores(db: Database) -> None:
    """For tests that commit through the API: the scores are global over the feature store."""
    async with db.sessionmaker() as s:
        for table in SCORE_TABLES:
            await s.execute(delete(table))
        await s.commit()

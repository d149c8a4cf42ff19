"""The inbox: a consumer records each event id in the same transaction as the event's effect,
so a redelivered or replayed event has no second effect."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, PrimaryKeyConstraint, Table, Text, func, text
from sqlalchemy.ext.asyncio import AsyncSession


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id"),
    )


_CLAIM = text(
    "INSERT INTO inbox (consumer, event_id) VALUES (:consumer, :event_id) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)


async def claim(session: AsyncSession, *, consumer: str, event_id: str) -> bool:
    """True the first time `consumer` sees `event_id` (the caller then applies the effect in the
    same transaction); False for a duplicate. Concurrent claimers block on the row lock until the
    first commits, so exactly one wins."""
    result = await session.execute(_CLAIM, {"consumer": consumer, "event_id": event_id})
    return result.first() is not None

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


_CLAIM_MANY = text(
    "INSERT INTO inbox (consumer, event_id) SELECT :consumer, unnest(CAST(:ids AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)


async def claim_many(session: AsyncSession, *, consumer: str, event_ids: list[str]) -> set[str]:
    """Records a polled batch's event ids in one statement and returns those seen for the first
    time; the caller applies their effects in the same transaction. A concurrent claimer of the
    same id blocks on the row lock until the first commits, so exactly one applies it."""
    if not event_ids:
        return set()
    unique = list(dict.fromkeys(event_ids))
    result = await session.execute(_CLAIM_MANY, {"consumer": consumer, "ids": unique})
    return set(result.scalars())


_PURGE = text("DELETE FROM inbox WHERE processed_at < now() - make_interval(days => :days)")


async def purge(session: AsyncSession, *, older_than_days: int) -> int:
    """Forgets event ids processed more than `older_than_days` ago; returns how many. Keep the
    window longer than any redelivery can arrive (Kafka retention, a shop's webhook retries):
    an id forgotten is an id that could apply twice."""
    result = await session.execute(_PURGE, {"days": older_than_days})
    return int(getattr(result, "rowcount", 0) or 0)

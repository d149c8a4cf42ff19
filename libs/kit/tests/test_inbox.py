"""The inbox: claims are once per consumer, and retention forgets only old ids."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from vafa.kit import inbox
from vafa.kit.db import Database


async def test_claim_is_once_per_consumer_and_purge_forgets_only_old_ids(kit_db: Database) -> None:
    consumer = f"c-{uuid.uuid4().hex[:8]}"
    old, new = f"old-{uuid.uuid4()}", f"new-{uuid.uuid4()}"
    async with kit_db.sessionmaker() as session, session.begin():
        assert await inbox.claim_many(session, consumer=consumer, event_ids=[old, new, old]) == {
            old,
            new,
        }
        assert await inbox.claim_many(session, consumer=consumer, event_ids=[old]) == set()
        await session.execute(
            text(
                "UPDATE inbox SET processed_at = now() - interval '31 days'"
                " WHERE consumer = :c AND event_id = :e"
            ),
            {"c": consumer, "e": old},
        )
    async with kit_db.sessionmaker() as session, session.begin():
        assert await inbox.purge(session, older_than_days=30) >= 1
        left = await session.execute(
            text("SELECT event_id FROM inbox WHERE consumer = :c"), {"c": consumer}
        )
        assert set(left.scalars()) == {new}
        # A forgotten id can be claimed again: that is why retention must outlive redeliveries.
        assert await inbox.claim_many(session, consumer=consumer, event_ids=[old, new]) == {old}

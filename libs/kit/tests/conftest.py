from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import BigInteger, Column, MetaData, Table, Text

from vafa.kit.db import Database, new_metadata
from vafa.kit.inbox import inbox_table
from vafa.kit.outbox import outbox_table
from vafa.kit.testing.plugin import recreate_database

metadata: MetaData = new_metadata()
outbox_table(metadata)
inbox_table(metadata)
effects = Table(
    "effects",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", Text, nullable=False),
)


@pytest.fixture(scope="session")
async def kit_db() -> AsyncIterator[Database]:
    """A database with just the kit's tables and an `effects` table handlers write to."""
    url = await recreate_database("test_kit_main")
    database = Database(url, pool_size=5)
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()

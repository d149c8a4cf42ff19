"""The async SQLAlchemy engine, sessions and the FastAPI session dependency.

Routes and handlers commit explicitly (`await session.commit()`); a session that leaves the
dependency without a commit is rolled back, so nothing is ever half-written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# Stable constraint names, so alembic autogenerate and hand-written migrations agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    """Each service declares `class Base(DeclarativeBase): metadata = new_metadata()`, so its
    tables never mix with another service's when several are imported in one process."""
    return MetaData(naming_convention=NAMING_CONVENTION)


class Database:
    def __init__(
        self, url: str, *, pool_size: int = 10, pre_ping: bool = True, echo: bool = False
    ) -> None:
        """`pre_ping` checks each connection on checkout (a round trip) so an API request never
        meets a connection the database closed; workers turn it off, since a failed batch is
        retried anyway and the round trip would cost every batch."""
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=pre_ping,
            pool_recycle=1800,
            echo=echo,
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    db: Database = request.app.state.db
    async with db.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def generic_plans(session: AsyncSession) -> None:
    """For the rest of this transaction, prepared statements use PostgreSQL's generic plan.

    For statements keyed by a few ids (`customer_id = ANY($1)`) planning can cost twice the run
    (2 ms against 1 ms), and PostgreSQL keeps re-planning them because a generic plan's
    estimate for an array of unknown size looks dearer. Their best plan never depends on the
    ids, so a per-event path takes the generic one. Not for statements whose best plan depends
    on a value (a full scan with a selective constant)."""
    await session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))

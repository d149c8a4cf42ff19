from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.inventory.locations.schemas import LocationUpsert
from vafa.inventory.models import Location

_UPSERT = text(
    "INSERT INTO locations (id, name, kind, priority, active) "
    "VALUES (:id, :name, :kind, :priority, :active) "
    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind, "
    "priority = EXCLUDED.priority, active = EXCLUDED.active, updated_at = now() "
    "RETURNING (xmax = 0) AS created"
)


async def upsert(session: AsyncSession, location_id: str, body: LocationUpsert) -> bool:
    """Creates or updates the location; True when created. New priorities apply to the next
    reservation (each unit of work reads them when it locks its SKUs)."""
    row = (await session.execute(_UPSERT, {"id": location_id, **body.model_dump()})).one()
    return bool(row.created)


async def get(session: AsyncSession, location_id: str) -> Location | None:
    return await session.get(Location, location_id, populate_existing=True)


async def list_all(session: AsyncSession) -> list[Location]:
    return list(await session.scalars(select(Location).order_by(Location.priority, Location.id)))

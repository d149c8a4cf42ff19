from typing import Annotated

from fastapi import APIRouter, Path, Response

from vafa.inventory.locations import service
from vafa.inventory.locations.schemas import LocationRead, LocationUpsert
from vafa.kit.auth import Principal, StaffRead, require
from vafa.kit.db import SessionDep

router = APIRouter(prefix="/v1/locations", tags=["locations"])

LocationId = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Its id."),
]


@router.get("", response_model=list[LocationRead], summary="Locations in allocation order")
async def list_locations(session: SessionDep, _: StaffRead) -> list[LocationRead]:
    return [LocationRead.model_validate(loc) for loc in await service.list_all(session)]


@router.put(
    "/{location_id}",
    response_model=LocationRead,
    summary="Create or update a warehouse or store (admin)",
)
async def put_location(
    location_id: LocationId,
    body: LocationUpsert,
    session: SessionDep,
    response: Response,
    _: Annotated[Principal, require()],
) -> LocationRead:
    created = await service.upsert(session, location_id, body)
    await session.commit()
    if created:
        response.status_code = 201
    location = await service.get(session, location_id)
    return LocationRead.model_validate(location)

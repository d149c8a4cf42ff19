from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.exceptions import RequestValidationError

from vafa.kit.auth import Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.profile.attributes import service
from vafa.profile.attributes.schemas import (
    CustomFieldCreate,
    CustomFieldRead,
    CustomFieldUpdate,
    TagCount,
)

router = APIRouter(tags=["customers"])

# Defining the shop's fields is a marketer's or admin's job (admin always passes `require`).
Marketer = Annotated[Principal, require("marketer")]
FieldKey = Annotated[str, Path(max_length=63, description="The field's key.")]


def _problem(exc: service.InvalidFields) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("body", *e.loc), "msg": e.message, "type": e.type} for e in exc.errors]
    )


@router.get(
    "/v1/custom-fields", response_model=list[CustomFieldRead], summary="The shop's custom fields"
)
async def list_fields(session: SessionDep, _: StaffRead) -> list[CustomFieldRead]:
    return [
        CustomFieldRead.model_validate(d) for d in (await service.definitions(session)).values()
    ]


@router.post(
    "/v1/custom-fields",
    response_model=CustomFieldRead,
    status_code=201,
    summary="Define a custom field",
    description="409 when the key is taken. Picklists need options.",
)
async def create_field(
    body: CustomFieldCreate, session: SessionDep, response: Response, _: Marketer
) -> CustomFieldRead:
    definition = await service.create_definition(session, body=body)
    await session.commit()
    response.headers["Location"] = f"/v1/custom-fields/{definition.key}"
    return CustomFieldRead.model_validate(definition)


@router.get("/v1/custom-fields/{key}", response_model=CustomFieldRead, summary="A custom field")
async def get_field(key: FieldKey, session: SessionDep, _: StaffRead) -> CustomFieldRead:
    return CustomFieldRead.model_validate(await service.get_definition(session, key))


@router.patch(
    "/v1/custom-fields/{key}",
    response_model=CustomFieldRead,
    summary="Rename a custom field or change a picklist's options",
    description="The type never changes (stored values would no longer match it).",
)
async def update_field(
    key: FieldKey, body: CustomFieldUpdate, session: SessionDep, _: Marketer
) -> CustomFieldRead:
    try:
        definition = await service.update_definition(session, key=key, body=body)
    except service.InvalidFields as exc:
        raise _problem(exc) from exc
    await session.commit()
    return CustomFieldRead.model_validate(definition)


@router.delete(
    "/v1/custom-fields/{key}",
    status_code=204,
    summary="Delete a custom field and its values on every file",
)
async def delete_field(key: FieldKey, session: SessionDep, _: Marketer) -> Response:
    await service.delete_definition(session, key=key)
    await session.commit()
    return Response(status_code=204)


@router.get(
    "/v1/tags",
    response_model=list[TagCount],
    summary="The tag cloud: every tag with the number of files carrying it",
)
async def tag_cloud(
    session: SessionDep,
    _: StaffRead,
    limit: Annotated[int, Query(ge=1, le=1000, description="The most used tags first.")] = 200,
) -> list[TagCount]:
    return [TagCount(tag=t, count=n) for t, n in await service.tag_cloud(session, limit=limit)]

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from vafa.kit.auth import StaffRead, StaffWrite
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound
from vafa.profile.attributes import service as attributes
from vafa.profile.attributes.schemas import NoteCreate, NoteRead, TagsWrite
from vafa.profile.customers import service
from vafa.profile.customers.identities import (
    Identity,
    IdentityKind,
    InvalidEmail,
    InvalidIdentity,
    InvalidPhone,
    normalise_email,
    normalise_phone,
    region_or,
)
from vafa.profile.customers.schemas import (
    CustomerCreate,
    CustomerMatch,
    CustomerRead,
    CustomerUpdate,
    IdentitiesRead,
    IdentityCreate,
    IdentityKindName,
)
from vafa.profile.duplicates import service as duplicates

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[uuid.UUID, Path(description="The customer id (a UUID).")]


def invalid(*loc: str, message: str, type: str = "value_error") -> RequestValidationError:
    """A 422 problem pointing at one request field, shaped like FastAPI's own (kit handler)."""
    error: dict[str, Any] = {"loc": loc, "msg": message, "type": type}
    return RequestValidationError([error])


async def file_of(session: SessionDep, customer_id: uuid.UUID) -> CustomerRead:
    """The file; 404 for an unknown id, 404 type customer-merged (with `merged_into`) for a
    merged one."""
    return await service.read_file(session, customer=await service.get_file(session, customer_id))


# Declared before /{customer_id} so "lookup" is never read as an id.
@router.get(
    "/lookup",
    response_model=CustomerMatch,
    summary="Find a customer by email or phone",
    description="Give exactly one of `email` and `phone`. Both are normalised as on intake: "
    "emails lower-cased, phones to E.164 (Persian and Arabic-Indic digits, local and 00 forms "
    "accepted; local forms read in the service's default region). Answers who it is (names, "
    "identities, order count); the whole file is `GET /v1/customers/{id}`.",
)
async def lookup(
    session: SessionDep,
    request: Request,
    _: StaffRead,
    email: Annotated[
        str | None, Query(max_length=320, description="An email address, any case.")
    ] = None,
    phone: Annotated[
        str | None, Query(max_length=64, description="A phone number in any common form.")
    ] = None,
) -> CustomerMatch:
    if (email is None) == (phone is None):
        raise invalid("query", "email", message="give exactly one of email and phone")
    if email is not None:
        try:
            identity = Identity(IdentityKind.email, normalise_email(email))
        except InvalidEmail as exc:
            raise invalid("query", "email", message=str(exc), type="value_error.email") from exc
    else:
        try:
            region = request.app.state.settings.default_region
            identity = Identity(IdentityKind.phone, normalise_phone(phone or "", region=region))
        except InvalidPhone as exc:
            raise invalid("query", "phone", message=str(exc), type="value_error.phone") from exc
    match = await service.match_identity(session, identity=identity)
    if match is None:
        raise NotFound(f"No customer has this {identity.kind}.", kind=identity.kind.value)
    return match


@router.post(
    "",
    response_model=CustomerRead,
    status_code=201,
    summary="Create a customer",
    description="Opens a file for a lead entered by staff or sent by the shop's backend. "
    "409 when the email or phone already belongs to a customer (the problem names them in "
    "`customer_id`).",
)
async def create_customer(
    body: CustomerCreate,
    session: SessionDep,
    request: Request,
    response: Response,
    _: StaffWrite,
) -> CustomerRead:
    try:
        customer = await service.create_customer(
            session,
            first_name=body.first_name,
            last_name=body.last_name,
            email=body.email,
            phone=body.phone,
            country_code=body.country_code,
            city=body.city,
            default_region=request.app.state.settings.default_region,
            acquisition_channel=body.acquisition_channel.value
            if body.acquisition_channel
            else None,
            acquisition_campaign=body.acquisition_campaign,
        )
    except InvalidEmail as exc:
        raise invalid("body", "email", message=str(exc), type="value_error.email") from exc
    except InvalidPhone as exc:
        raise invalid("body", "phone", message=str(exc), type="value_error.phone") from exc
    # Suggested near-duplicates of the new file go to the review queue with it.
    await duplicates.scan(
        session,
        customer_id=customer.id,
        threshold=request.app.state.settings.duplicate_name_similarity,
    )
    await session.commit()
    response.headers["Location"] = f"/v1/customers/{customer.id}"
    return await service.read_file(session, customer=customer)


@router.get(
    "/{customer_id}",
    response_model=CustomerRead,
    summary="The customer file",
    description="A merged file answers 404 with type customer-merged, `merged_into` (the "
    "survivor's id) and `location` (its file).",
)
async def get_customer(customer_id: CustomerId, session: SessionDep, _: StaffRead) -> CustomerRead:
    return await file_of(session, customer_id)


def fields_problem(exc: attributes.InvalidFields) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("body", *e.loc), "msg": e.message, "type": e.type} for e in exc.errors]
    )


@router.patch(
    "/{customer_id}",
    response_model=CustomerRead,
    summary="Change the file's attributes",
    description="Only the fields given change (null clears one). Custom field values merge by "
    "key and are validated against their definitions: a wrong type or an unknown key is a 422 "
    "naming /body/custom_fields/<key>. Publishes CustomerUpdated with the changed fields.",
)
async def update_customer(
    customer_id: CustomerId, body: CustomerUpdate, session: SessionDep, _: StaffWrite
) -> CustomerRead:
    try:
        customer, _changed = await service.update_customer(
            session, customer_id=customer_id, changes=body.model_dump(exclude_unset=True)
        )
    except attributes.InvalidFields as exc:
        raise fields_problem(exc) from exc
    await session.commit()
    return await service.read_file(session, customer=customer)


@router.post(
    "/{customer_id}/identities",
    response_model=IdentitiesRead,
    status_code=201,
    summary="Attach an email, phone or shop customer id",
    description="Normalised as on intake. 201 when attached, 200 when the file already had "
    "it; 422 naming /body/value when it cannot be read; 409 (with `customer_id`) when it "
    "belongs to another file (a duplicate to review or merge).",
)
async def add_identity(
    customer_id: CustomerId,
    body: IdentityCreate,
    session: SessionDep,
    request: Request,
    response: Response,
    _: StaffWrite,
) -> IdentitiesRead:
    region = region_or(body.country_code, request.app.state.settings.default_region)
    try:
        identity = service.parse_identity(body.kind.value, body.value, region=region)
    except InvalidIdentity as exc:
        raise invalid(
            "body", "value", message=str(exc), type=f"value_error.{body.kind.value}"
        ) from exc
    _customer, added = await service.add_identity(
        session, customer_id=customer_id, identity=identity
    )
    await session.commit()
    if not added:
        response.status_code = 200
    return (await file_of(session, customer_id)).identities


@router.delete(
    "/{customer_id}/identities",
    status_code=204,
    summary="Detach an email, phone or shop customer id",
    description="`kind` and `value` as query parameters (the value is normalised first).",
)
async def remove_identity(
    customer_id: CustomerId,
    session: SessionDep,
    request: Request,
    _: StaffWrite,
    kind: Annotated[IdentityKindName, Query(description="email, phone or shop.")],
    value: Annotated[str, Query(min_length=1, max_length=320)],
) -> Response:
    region = request.app.state.settings.default_region
    try:
        identity = service.parse_identity(kind.value, value, region=region)
    except InvalidIdentity as exc:
        raise invalid("query", "value", message=str(exc), type=f"value_error.{kind.value}") from exc
    await service.remove_identity(session, customer_id=customer_id, identity=identity)
    await session.commit()
    return Response(status_code=204)


@router.put(
    "/{customer_id}/tags",
    response_model=list[str],
    summary="Replace the file's tags",
)
async def set_tags(
    customer_id: CustomerId, body: TagsWrite, session: SessionDep, _: StaffWrite
) -> list[str]:
    return await _write_tags(session, customer_id, body, mode="set")


@router.post("/{customer_id}/tags", response_model=list[str], summary="Add tags to the file")
async def add_tags(
    customer_id: CustomerId, body: TagsWrite, session: SessionDep, _: StaffWrite
) -> list[str]:
    return await _write_tags(session, customer_id, body, mode="add")


@router.delete("/{customer_id}/tags/{tag}", response_model=list[str], summary="Remove a tag")
async def remove_tag(
    customer_id: CustomerId,
    tag: Annotated[str, Path(max_length=64)],
    session: SessionDep,
    _: StaffWrite,
) -> list[str]:
    return await _write_tags(session, customer_id, TagsWrite(tags=[tag]), mode="remove")


async def _write_tags(
    session: SessionDep, customer_id: uuid.UUID, body: TagsWrite, *, mode: str
) -> list[str]:
    try:
        tags = attributes.clean_tags(body.tags)
    except ValueError as exc:
        raise invalid("body", "tags", message=str(exc)) from exc
    customer = await service.lock_file(session, customer_id)
    if mode == "set":
        changed = await attributes.set_tags(session, customer_id=customer_id, tags=tags)
    elif mode == "add":
        changed = await attributes.add_tags(session, customer_id=customer_id, tags=tags)
    else:
        changed = await attributes.remove_tags(session, customer_id=customer_id, tags=tags)
    if changed:
        customer.updated_at = service.utcnow()
        await service.emit_updated(session, customer=customer, changed_fields=["tags"])
    await session.commit()
    return await attributes.tags_of(session, customer_id)


@router.post("/{customer_id}/notes", response_model=NoteRead, status_code=201, summary="Add a note")
async def add_note(
    customer_id: CustomerId, body: NoteCreate, session: SessionDep, staff: StaffWrite
) -> NoteRead:
    await service.get_file(session, customer_id)
    note = await attributes.add_note(
        session, customer_id=customer_id, body=body.body, author=staff.header_value()
    )
    await session.commit()
    return NoteRead.model_validate(note)


@router.get(
    "/{customer_id}/notes", response_model=list[NoteRead], summary="The file's notes, newest first"
)
async def list_notes(customer_id: CustomerId, session: SessionDep, _: StaffRead) -> list[NoteRead]:
    await service.get_file(session, customer_id)
    return [NoteRead.model_validate(n) for n in await attributes.notes_of(session, customer_id)]

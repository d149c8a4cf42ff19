import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from vafa.kit.auth import StaffRead, StaffWrite
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound
from vafa.profile.customers import service
from vafa.profile.customers.identities import (
    Identity,
    IdentityKind,
    InvalidEmail,
    InvalidPhone,
    normalise_email,
    normalise_phone,
)
from vafa.profile.customers.schemas import CustomerCreate, CustomerRead

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[uuid.UUID, Path(description="The customer id (a UUID).")]


def invalid(*loc: str, message: str, type: str = "value_error") -> RequestValidationError:
    """A 422 problem pointing at one request field, shaped like FastAPI's own (kit handler)."""
    error: dict[str, Any] = {"loc": loc, "msg": message, "type": type}
    return RequestValidationError([error])


async def file_of(session: SessionDep, customer_id: uuid.UUID) -> CustomerRead:
    customer = await service.get_customer(session, customer_id)
    if customer is None:
        raise NotFound(f"No customer has the id {customer_id}.", customer_id=str(customer_id))
    return await service.read_file(session, customer=customer)


# Declared before /{customer_id} so "lookup" is never read as an id.
@router.get(
    "/lookup",
    response_model=CustomerRead,
    summary="Find a customer by email or phone",
    description="Give exactly one of `email` and `phone`. Both are normalised as on intake: "
    "emails lower-cased, phones to E.164 (Persian and Arabic-Indic digits, local and 00 forms "
    "accepted; local forms read in the service's default region).",
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
) -> CustomerRead:
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
    customer = await service.find_by_identity(session, identity=identity)
    if customer is None:
        raise NotFound(f"No customer has this {identity.kind}.", kind=identity.kind.value)
    return await service.read_file(session, customer=customer)


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
        )
    except InvalidEmail as exc:
        raise invalid("body", "email", message=str(exc), type="value_error.email") from exc
    except InvalidPhone as exc:
        raise invalid("body", "phone", message=str(exc), type="value_error.phone") from exc
    await session.commit()
    response.headers["Location"] = f"/v1/customers/{customer.id}"
    return await service.read_file(session, customer=customer)


@router.get("/{customer_id}", response_model=CustomerRead, summary="The customer file")
async def get_customer(customer_id: CustomerId, session: SessionDep, _: StaffRead) -> CustomerRead:
    return await file_of(session, customer_id)

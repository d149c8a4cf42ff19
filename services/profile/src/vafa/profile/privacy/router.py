from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from vafa.kit.auth import Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.profile.customers import service as customers
from vafa.profile.customers.router import CustomerId
from vafa.profile.customers.schemas import CustomerRead
from vafa.profile.privacy import service

router = APIRouter(prefix="/v1/customers", tags=["customers"])

# Erasure cannot be undone: admins only (require() with no roles admits admin alone).
Admin = Annotated[Principal, require()]


@router.get(
    "/{customer_id}/export",
    summary="Everything held about the customer (JSON)",
    description="The file's row and every row of every table about it: identities, orders, "
    "timeline, tags, notes, effective dates, consents and their history, household, merges.",
    response_model=dict[str, Any],
)
async def export(customer_id: CustomerId, session: SessionDep, _: StaffRead) -> JSONResponse:
    data = await service.export(session, customer_id=customer_id)
    return JSONResponse(
        data,
        headers={"Content-Disposition": f'attachment; filename="customer-{customer_id}.json"'},
    )


@router.post(
    "/{customer_id}/erasure",
    response_model=CustomerRead,
    summary="Anonymise the file (right to erasure)",
    description="Names, identities, notes, dates, addresses, custom fields, tags, consents "
    "and timeline details are removed; order amounts stay (anonymised) for the shop's books. "
    "Publishes CustomerErased. Admins only; 409 when already erased.",
)
async def erase(customer_id: CustomerId, session: SessionDep, _: Admin) -> CustomerRead:
    await service.erase(session, customer_id=customer_id)
    await session.commit()
    return await customers.read_file(
        session, customer=await customers.get_file(session, customer_id)
    )

import uuid

from fastapi import APIRouter

from vafa.kit.auth import MemberDep
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound
from vafa.profile.customers import service
from vafa.profile.customers.schemas import CustomerRead

router = APIRouter(prefix="/v1/club", tags=["customers"])


@router.get(
    "/me",
    response_model=CustomerRead,
    summary="The signed-in club member's own file",
    description="Scoped by the member token: a member only ever sees their own file.",
)
async def get_me(member: MemberDep, session: SessionDep) -> CustomerRead:
    try:
        customer_id = uuid.UUID(member.id)
    except ValueError:
        customer = None
    else:
        customer = await service.get_customer(session, customer_id)
    if customer is None:
        raise NotFound("Your customer file was not found.")
    return await service.read_file(session, customer=customer)

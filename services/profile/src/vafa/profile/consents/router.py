import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from vafa.kit.auth import Principal, StaffRead, StaffWrite, require
from vafa.kit.db import SessionDep
from vafa.kit.errors import Problem
from vafa.profile.consents import service
from vafa.profile.consents.schemas import (
    Channel,
    ConsentChangeRead,
    ConsentRead,
    ConsentsRead,
    ConsentWrite,
    InboundSms,
    InboundSmsResult,
    UnsubscribeLinkCreate,
    UnsubscribeLinkRead,
    UnsubscribeRead,
)
from vafa.profile.customers import service as customers
from vafa.profile.customers.identities import InvalidPhone, normalise_phone
from vafa.profile.customers.router import CustomerId, invalid

router = APIRouter(tags=["customers"])

# SMS gateways report inbound messages with a shop/integration key; staff may replay them.
Integration = Annotated[Principal, require("marketer", "agent", "shop")]
Token = Annotated[str, Path(max_length=2000, description="The token of the unsubscribe link.")]
PUBLIC: dict[str, Any] = {"security": []}


def _state(state: service.ConsentState) -> ConsentRead:
    return ConsentRead(
        channel=state.channel,
        granted=state.granted,
        source=state.source,
        changed_at=state.changed_at,
    )


@router.get(
    "/v1/customers/{customer_id}/consents",
    response_model=ConsentsRead,
    summary="Consents per channel and their history",
)
async def get_consents(customer_id: CustomerId, session: SessionDep, _: StaffRead) -> ConsentsRead:
    await customers.get_file(session, customer_id)
    return ConsentsRead(
        current=[
            ConsentRead.model_validate(c) for c in await service.current(session, customer_id)
        ],
        history=[
            ConsentChangeRead.model_validate(c) for c in await service.history(session, customer_id)
        ],
    )


@router.put(
    "/v1/customers/{customer_id}/consents",
    response_model=ConsentRead,
    summary="Grant or revoke consent on a channel",
    description="A change is kept in the history and publishes ConsentChanged and "
    "CustomerUpdated; setting what is in force already changes nothing.",
)
async def put_consent(
    customer_id: CustomerId, body: ConsentWrite, session: SessionDep, staff: StaffWrite
) -> ConsentRead:
    state, _ = await service.set_consent(
        session,
        customer_id=customer_id,
        channel=body.channel,
        granted=body.granted,
        source=body.source,
        detail={"by": staff.header_value()},
        at=body.changed_at,
    )
    await session.commit()
    return _state(state)


@router.post(
    "/v1/customers/{customer_id}/unsubscribe-links",
    response_model=UnsubscribeLinkRead,
    status_code=201,
    summary="A signed unsubscribe link for a message to this customer",
)
async def create_unsubscribe_link(
    customer_id: CustomerId,
    body: UnsubscribeLinkCreate,
    session: SessionDep,
    request: Request,
    _: StaffWrite,
) -> UnsubscribeLinkRead:
    await customers.get_file(session, customer_id)
    secret = request.app.state.settings.unsubscribe_secret.get_secret_value()
    token = service.unsubscribe_token(customer_id, body.channel, secret=secret)
    return UnsubscribeLinkRead(token=token, path=f"/v1/unsubscribe/{token}")


async def _from_token(
    session: SessionDep, request: Request, token: str
) -> tuple[uuid.UUID, Channel]:
    secret = request.app.state.settings.unsubscribe_secret.get_secret_value()
    try:
        customer_id, channel = service.read_token(token, secret=secret)
    except service.InvalidToken as exc:
        raise Problem(404, str(exc), type="not-found") from exc
    # A link mailed before a merge still works: it acts on the survivor.
    return await customers.survivor_of(session, customer_id), channel


@router.get(
    "/v1/unsubscribe/{token}",
    response_model=UnsubscribeRead,
    summary="What an unsubscribe link would stop (public, no login)",
    openapi_extra=PUBLIC,
)
async def unsubscribe_status(
    token: Token, session: SessionDep, request: Request
) -> UnsubscribeRead:
    customer_id, channel = await _from_token(session, request, token)
    current = {c.channel: c for c in await service.current(session, customer_id)}
    row = current.get(channel.value)
    # No consent on record: treated as allowed until the customer says otherwise.
    return UnsubscribeRead(channel=channel, granted=True if row is None else row.granted)


@router.post(
    "/v1/unsubscribe/{token}",
    response_model=UnsubscribeRead,
    summary="Unsubscribe through a link (public, no login)",
    description="Revokes consent on the link's channel (source unsubscribe_link). Repeating it "
    "changes nothing.",
    openapi_extra=PUBLIC,
)
async def unsubscribe(token: Token, session: SessionDep, request: Request) -> UnsubscribeRead:
    customer_id, channel = await _from_token(session, request, token)
    state, _ = await service.set_consent(
        session,
        customer_id=customer_id,
        channel=channel,
        granted=False,
        source="unsubscribe_link",
    )
    await session.commit()
    return UnsubscribeRead(channel=state.channel, granted=state.granted)


@router.post(
    "/v1/consents/inbound-sms",
    response_model=InboundSmsResult,
    summary="An inbound SMS: opt-out keywords revoke SMS consent",
    description="For SMS gateways and panels. The keyword list is configurable "
    "(VAFA_PROFILE_UNSUBSCRIBE_KEYWORDS); matching folds Arabic/Persian letter forms and "
    "Persian/Arabic/fullwidth digits and ignores spaces, punctuation and trailing digits, so "
    '"لغو", "لغو ۱۱", "STOP" and "ԴԱԴԱՐ" all match. 422 naming /body/phone when the sender '
    "cannot be read.",
)
async def inbound_sms(
    body: InboundSms, session: SessionDep, request: Request, _: Integration
) -> InboundSmsResult:
    settings = request.app.state.settings
    try:
        phone = normalise_phone(body.phone, region=settings.default_region)
    except InvalidPhone as exc:
        raise invalid("body", "phone", message=str(exc), type="value_error.phone") from exc
    keyword, customer_id, state = await service.inbound_sms(
        session,
        phone=phone,
        text=body.text,
        keywords=settings.unsubscribe_keywords,
        message_id=body.message_id,
    )
    await session.commit()
    return InboundSmsResult(
        keyword=keyword, customer_id=customer_id, consent=_state(state) if state else None
    )

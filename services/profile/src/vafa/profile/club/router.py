"""The club: public sign-up and sign-in (no credentials; the gateway routes them open because
they declare `security: []`), and the signed-in member's own routes under /v1/club/me, always
scoped by the member token, never by an id in the path."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.auth import MemberDep, Principal, issue_member_token
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound, Problem
from vafa.profile.club import service
from vafa.profile.club.schemas import (
    Accepted,
    ClubAccountRead,
    ClubSignUp,
    CodeRequest,
    CodeSignIn,
    MemberConsentWrite,
    MemberUpdate,
    PasswordReset,
    PasswordSignIn,
    TokenRead,
    VerificationCode,
    VerificationRequest,
)
from vafa.profile.config import Settings
from vafa.profile.consents import service as consents
from vafa.profile.consents.schemas import ConsentChangeRead, ConsentRead, ConsentsRead
from vafa.profile.customers import service as customers
from vafa.profile.customers.identities import Identity, InvalidEmail, InvalidPhone
from vafa.profile.customers.router import invalid
from vafa.profile.customers.schemas import CustomerRead
from vafa.profile.models import Customer
from vafa.profile.timeline import service as timeline
from vafa.profile.timeline.schemas import TimelineEntryRead, TimelinePage

router = APIRouter(prefix="/v1/club", tags=["club"])

PUBLIC: dict[str, Any] = {"security": []}
CODE_SENT = "If an account matches, a code is on its way."


def settings_of(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def identifier_of(raw: str, settings: Settings) -> Identity:
    try:
        return service.parse_identifier(raw, default_region=settings.default_region)
    except (InvalidEmail, InvalidPhone) as exc:
        raise invalid(
            "body", "identifier", message=f"neither an email nor a phone number: {exc}"
        ) from exc


def check_password(password: str, settings: Settings, *, field: str = "password") -> None:
    if len(password) < settings.password_min_length:
        raise invalid(
            "body",
            field,
            message=f"at least {settings.password_min_length} characters",
            type="string_too_short",
        )


def token_for(customer_id: uuid.UUID, settings: Settings) -> TokenRead:
    token = issue_member_token(
        str(customer_id),
        secret=service.secret_of(settings),
        ttl_seconds=settings.member_token_ttl_seconds,
    )
    return TokenRead(
        access_token=token, expires_in=settings.member_token_ttl_seconds, customer_id=customer_id
    )


async def failed(session: AsyncSession, identity: Identity) -> Problem:
    """After a failed attempt: keep its count, then answer 429 if it locked, else 401."""
    await session.commit()
    await service.ensure_not_locked(session, identity)
    return service.BadCredentials()


@router.post(
    "/signup",
    response_model=TokenRead,
    status_code=201,
    summary="Join the club",
    description="Opens a lead's file with a club account ('member' until a code proves the "
    "phone or email; a verify code is sent at once) and signs in. 409 when the email or phone "
    "is already on file: sign in, or ask for a sign-in code.",
    openapi_extra=PUBLIC,
)
async def sign_up(body: ClubSignUp, session: SessionDep, request: Request) -> TokenRead:
    settings = settings_of(request)
    check_password(body.password, settings)
    service.secret_of(settings)
    try:
        customer, _ = await service.sign_up(
            session,
            first_name=body.first_name,
            last_name=body.last_name,
            email=body.email,
            phone=body.phone,
            password=body.password,
            referral_code=body.referral_code,
            country_code=body.country_code,
            city=body.city,
            settings=settings,
        )
    except InvalidEmail as exc:
        raise invalid("body", "email", message=str(exc), type="value_error.email") from exc
    except InvalidPhone as exc:
        raise invalid("body", "phone", message=str(exc), type="value_error.phone") from exc
    await service.request_verification(
        session,
        customer_id=customer.id,
        channel="sms" if (body.phone or "").strip() else "email",
        settings=settings,
    )
    await session.commit()
    return token_for(customer.id, settings)


@router.post(
    "/login",
    response_model=TokenRead,
    summary="Sign in with a password",
    description="The identifier is an email or a phone in any form. 401 for any mismatch "
    "(unknown or wrong alike); 429 with Retry-After once the identifier is locked after "
    "repeated failures.",
    openapi_extra=PUBLIC,
)
async def login(body: PasswordSignIn, session: SessionDep, request: Request) -> TokenRead:
    settings = settings_of(request)
    identity = identifier_of(body.identifier, settings)
    customer_id = await service.sign_in_with_password(
        session, identity=identity, password=body.password, settings=settings
    )
    if customer_id is None:
        raise await failed(session, identity)
    await session.commit()
    return token_for(customer_id, settings)


@router.post(
    "/codes",
    response_model=Accepted,
    status_code=202,
    summary="Ask for a sign-in or password-reset code",
    description="Always 202 with the same answer, whether or not anyone holds the identifier. "
    "The code goes to that email or phone (by messaging).",
    openapi_extra=PUBLIC,
)
async def request_code(body: CodeRequest, session: SessionDep, request: Request) -> Accepted:
    settings = settings_of(request)
    identity = identifier_of(body.identifier, settings)
    await service.request_code(
        session,
        identity=identity,
        purpose=service.CodePurpose(body.purpose.value),
        settings=settings,
    )
    await session.commit()
    return Accepted(detail=CODE_SENT)


@router.post(
    "/login/code",
    response_model=TokenRead,
    summary="Sign in with a one-time code",
    description="Redeems a sign_in code. It proves the email or phone, so the account is "
    "verified (and opened, for a customer on file without one). 401/429 as for /login.",
    openapi_extra=PUBLIC,
)
async def login_with_code(body: CodeSignIn, session: SessionDep, request: Request) -> TokenRead:
    settings = settings_of(request)
    identity = identifier_of(body.identifier, settings)
    customer_id = await service.sign_in_with_code(
        session, identity=identity, code=body.code, settings=settings
    )
    if customer_id is None:
        raise await failed(session, identity)
    await session.commit()
    return token_for(customer_id, settings)


@router.post(
    "/password-reset",
    response_model=TokenRead,
    summary="Set a new password with a reset code",
    description="Redeems a password_reset code, sets the password and signs in. 401/429 as "
    "for /login.",
    openapi_extra=PUBLIC,
)
async def reset_password(body: PasswordReset, session: SessionDep, request: Request) -> TokenRead:
    settings = settings_of(request)
    check_password(body.new_password, settings, field="new_password")
    identity = identifier_of(body.identifier, settings)
    customer_id = await service.reset_password(
        session,
        identity=identity,
        code=body.code,
        new_password=body.new_password,
        settings=settings,
    )
    if customer_id is None:
        raise await failed(session, identity)
    await session.commit()
    return token_for(customer_id, settings)


# -- the signed-in member ------------------------------------------------------------------


async def own_customer(session: AsyncSession, member: Principal, *, lock: bool = False) -> Customer:
    """The member's own file (locked with `lock`); 404 when the token names no live file (a
    foreign id, or a file since merged or erased: the member signs in again)."""
    try:
        customer_id = uuid.UUID(member.id)
    except ValueError:
        customer = None
    else:
        query = select(Customer).where(Customer.id == customer_id)
        if lock:
            query = query.with_for_update()
        customer = await session.scalar(query.execution_options(populate_existing=True))
    if customer is None or customer.merged_into is not None or customer.erased_at is not None:
        raise NotFound("Your customer file was not found.")
    return customer


@router.get(
    "/me",
    response_model=CustomerRead,
    summary="The signed-in club member's own file",
    description="Scoped by the member token: a member only ever sees their own file.",
)
async def get_me(member: MemberDep, session: SessionDep) -> CustomerRead:
    customer = await own_customer(session, member)
    return await customers.read_file(session, customer=customer)


@router.get("/me/account", response_model=ClubAccountRead, summary="The member's club account")
async def get_account(member: MemberDep, session: SessionDep) -> ClubAccountRead:
    customer = await own_customer(session, member)
    account = await service.get_account(session, customer.id)
    if account is None:
        raise NotFound("You have no club account.")
    return ClubAccountRead(
        status=service.ClubStatus(account.status),
        joined_via=account.joined_via,
        joined_at=account.joined_at,
        verified_at=account.verified_at,
        has_password=account.password_hash is not None,
    )


@router.post(
    "/me/verification",
    response_model=Accepted,
    status_code=202,
    summary="Send a code that proves the member's phone or email",
)
async def request_verification(
    body: VerificationRequest, member: MemberDep, session: SessionDep, request: Request
) -> Accepted:
    customer = await own_customer(session, member)
    await service.request_verification(
        session, customer_id=customer.id, channel=body.channel, settings=settings_of(request)
    )
    await session.commit()
    return Accepted(detail=f"A code is on its way by {body.channel}.")


@router.post(
    "/me/verification/confirm",
    response_model=ClubAccountRead,
    summary="Prove the phone or email with the code",
    description="422 (pointer /body/code) for a wrong, expired or spent code.",
)
async def confirm_verification(
    body: VerificationCode, member: MemberDep, session: SessionDep, request: Request
) -> ClubAccountRead:
    customer = await own_customer(session, member)
    account = await service.verify(
        session, customer_id=customer.id, code=body.code, settings=settings_of(request)
    )
    await session.commit()
    if account is None:
        raise invalid("body", "code", message="the code is wrong, expired or already used")
    return await get_account(member, session)


@router.get(
    "/me/timeline",
    response_model=TimelinePage,
    summary="The member's own timeline, newest first",
)
async def my_timeline(
    member: MemberDep,
    session: SessionDep,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200, description="`next_cursor` of the previous page; omit for the first."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Entries per page.")] = 20,
) -> TimelinePage:
    customer = await own_customer(session, member)
    try:
        entries, next_cursor = await timeline.list_entries(
            session, customer_id=customer.id, limit=limit, cursor=cursor
        )
    except timeline.InvalidCursor as exc:
        raise invalid("query", "cursor", message=str(exc)) from exc
    return TimelinePage(
        items=[TimelineEntryRead.model_validate(e) for e in entries], next_cursor=next_cursor
    )


@router.patch(
    "/me",
    response_model=CustomerRead,
    summary="Change your own details",
    description="Names, birth date, gender and address fields only; anything else in the body "
    "is a 422 naming it. Publishes CustomerUpdated with the changed fields.",
)
async def update_me(body: MemberUpdate, member: MemberDep, session: SessionDep) -> CustomerRead:
    customer = await own_customer(session, member)
    customer, _ = await customers.update_customer(
        session, customer_id=customer.id, changes=body.model_dump(exclude_unset=True)
    )
    await session.commit()
    return await customers.read_file(session, customer=customer)


@router.get(
    "/me/consents",
    response_model=ConsentsRead,
    summary="Your consents per channel and their history",
)
async def my_consents(member: MemberDep, session: SessionDep) -> ConsentsRead:
    customer = await own_customer(session, member)
    return ConsentsRead(
        current=[
            ConsentRead.model_validate(c) for c in await consents.current(session, customer.id)
        ],
        history=[
            ConsentChangeRead.model_validate(c)
            for c in await consents.history(session, customer.id)
        ],
    )


@router.put(
    "/me/consents",
    response_model=ConsentRead,
    summary="Grant or revoke your consent on a channel",
    description='Recorded with source "club"; publishes ConsentChanged and CustomerUpdated '
    "when it changes.",
)
async def put_my_consent(
    body: MemberConsentWrite, member: MemberDep, session: SessionDep
) -> ConsentRead:
    customer = await own_customer(session, member)
    state, _ = await consents.set_consent(
        session,
        customer_id=customer.id,
        channel=body.channel,
        granted=body.granted,
        source="club",
        detail={"by": member.header_value()},
    )
    await session.commit()
    return ConsentRead(
        channel=state.channel,
        granted=state.granted,
        source=state.source,
        changed_at=state.changed_at,
    )

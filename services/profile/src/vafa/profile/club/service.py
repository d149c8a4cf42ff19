"""The club account: sign-up, enrolment at the first paid purchase, sign-in by password or
one-time code, password reset, verification, lockout. Domain logic only: keyword-only functions
that take the session and never commit (a failed attempt's bookkeeping is committed by the
caller before it answers, so a lockout survives the error response).

Rules:
- Passwords are argon2id hashes (argon2-cffi's defaults); hashing runs in a thread, it costs
  tens of milliseconds of CPU on purpose.
- A one-time code is `code_digits` random digits. Only its HMAC-SHA256 (keyed by the member
  token secret, salted by customer and purpose) is stored; the code itself leaves only inside
  the OneTimeCodeRequested event for messaging to send. A code lives `code_ttl_seconds`, dies
  after `code_max_attempts` wrong tries, is spent by its first use, and a newer code of the
  same purpose replaces it.
- Failed sign-ins are counted per identifier (normalised email or phone), whether or not an
  account holds it, so neither the answers nor the lockout tell who is a member. After
  `lockout_threshold` failures the identifier is locked for `lockout_minutes`.
- Redeeming a code proves the phone or email it went to: the account becomes 'verified'.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.cloudevents import timestamp
from vafa.kit.errors import Conflict, Problem
from vafa.kit.outbox import OutboxEvent
from vafa.profile.config import Settings
from vafa.profile.customers import service as customers
from vafa.profile.customers import snapshot as snapshots
from vafa.profile.customers.identities import (
    Identity,
    IdentityKind,
    normalise_email,
    normalise_phone,
    region_or,
)
from vafa.profile.customers.schemas import LifecycleStage
from vafa.profile.events import CUSTOMERS_TOPIC, outbox
from vafa.profile.models import ClubAccount, Customer, CustomerIdentity, OneTimeCode

log = structlog.get_logger(__name__)

_hasher = PasswordHasher()
# Verified against when nobody holds the identifier, so a miss costs what a hit costs.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class CodePurpose(StrEnum):
    sign_in = "sign_in"
    password_reset = "password_reset"
    verify = "verify"


class ClubStatus(StrEnum):
    member = "member"
    verified = "verified"


class Locked(Problem):
    """429: the identifier is locked after too many failed sign-ins."""

    def __init__(self, until: datetime) -> None:
        seconds = max(1, int((until - datetime.now(UTC)).total_seconds()) + 1)
        super().__init__(
            429,
            "Too many failed attempts: sign-in is locked for this phone or email until "
            f"{until.isoformat(timespec='seconds')}.",
            title="Sign-in locked",
            type="sign-in-locked",
            headers={"Retry-After": str(seconds)},
            locked_until=until.isoformat(),
            retry_after_seconds=seconds,
        )


class BadCredentials(Problem):
    """401, the same for an unknown identifier, a wrong password or a wrong code."""

    def __init__(self) -> None:
        super().__init__(
            401,
            "The phone or email and the password or code do not match.",
            title="Sign-in failed",
            type="bad-credentials",
        )


class AlreadyRegistered(Conflict):
    def __init__(self, field: str) -> None:
        super().__init__(
            f"This {field} is already registered. Sign in, or ask for a code to set a password.",
            pointer=f"/body/{field}",
        )


class NotConfigured(Problem):
    def __init__(self) -> None:
        super().__init__(
            503,
            "Club sign-in is not configured on this installation (VAFA_JWT_SECRET is unset).",
            type="club-not-configured",
        )


def utcnow() -> datetime:
    return datetime.now(UTC)


def secret_of(settings: Settings) -> str:
    secret = settings.jwt_secret.get_secret_value()
    if not secret:
        raise NotConfigured()
    return secret


def parse_identifier(raw: str, *, default_region: str) -> Identity:
    """An email (it has an @) or a phone in any local or international form, normalised as on
    intake. Raises InvalidEmail/InvalidPhone."""
    if "@" in raw:
        return Identity(IdentityKind.email, normalise_email(raw))
    return Identity(IdentityKind.phone, normalise_phone(raw, region=default_region))


# -- passwords -----------------------------------------------------------------------------


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def password_matches(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check) and password_hash is not None


# -- the throttle --------------------------------------------------------------------------

_LOCKED_UNTIL = text(
    "SELECT locked_until FROM sign_in_throttle WHERE identifier = :identifier "
    "AND locked_until > now()"
)
# One statement, so concurrent failures are counted exactly: the row lock serialises them.
# The failure that reaches the threshold locks the identifier and starts the count again.
_FAIL = text(
    "INSERT INTO sign_in_throttle AS t (identifier, failures, locked_until, updated_at) "
    "VALUES (:identifier, CASE WHEN :threshold <= 1 THEN 0 ELSE 1 END, "
    " CASE WHEN :threshold <= 1 THEN now() + make_interval(mins => :minutes) END, now()) "
    "ON CONFLICT (identifier) DO UPDATE SET "
    " failures = CASE WHEN t.failures + 1 >= :threshold THEN 0 ELSE t.failures + 1 END, "
    " locked_until = CASE WHEN t.failures + 1 >= :threshold "
    "  THEN now() + make_interval(mins => :minutes) ELSE t.locked_until END, "
    " updated_at = now() "
    "RETURNING locked_until"
)
_CLEAR = text("DELETE FROM sign_in_throttle WHERE identifier = :identifier")


def _throttle_key(identity: Identity) -> str:
    return f"{identity.kind.value}:{identity.value}"


async def ensure_not_locked(session: AsyncSession, identity: Identity) -> None:
    until = await session.scalar(_LOCKED_UNTIL, {"identifier": _throttle_key(identity)})
    if until is not None:
        raise Locked(until)


async def record_failure(
    session: AsyncSession, identity: Identity, *, settings: Settings
) -> datetime | None:
    """Counts a failed sign-in; the lock's end when this failure locked the identifier."""
    until = await session.scalar(
        _FAIL,
        {
            "identifier": _throttle_key(identity),
            "threshold": settings.lockout_threshold,
            "minutes": settings.lockout_minutes,
        },
    )
    if until is not None and until > utcnow():
        log.info("sign_in_locked", kind=identity.kind.value)
        return until
    return None


async def clear_failures(session: AsyncSession, identity: Identity) -> None:
    await session.execute(_CLEAR, {"identifier": _throttle_key(identity)})


# -- accounts and their events --------------------------------------------------------------


_CLUB_FIELDS = text(
    "SELECT customer_id, status, joined_at FROM club_accounts "
    "WHERE customer_id = ANY(CAST(:ids AS uuid[]))"
)


async def club_fields(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The snapshot's club fields ('none' for a customer without an account), for the one
    snapshot builder (registered below as a contributor)."""
    out: dict[uuid.UUID, dict[str, Any]] = {cid: {"club_status": "none"} for cid in ids}
    for cid, status, joined_at in (await session.execute(_CLUB_FIELDS, {"ids": list(ids)})).all():
        out[cid] = {"club_status": status, "club_joined_at": joined_at}
    return out


snapshots.contributors.append(club_fields)


async def get_account(session: AsyncSession, customer_id: uuid.UUID) -> ClubAccount | None:
    return await session.get(ClubAccount, customer_id)


async def emit_club_changed(
    session: AsyncSession,
    *,
    customer: Customer,
    changed_fields: Sequence[str],
    cause_id: str,
) -> None:
    """CustomerUpdated for a change of membership; `cause_id` makes its id stable."""
    snap = await customers.snapshot(session, customer)
    await outbox.add_many(
        session,
        [
            customers.updated_event(
                snap,
                changed_fields=changed_fields,
                cause_id=cause_id,
            )
        ],
    )


async def sign_up(
    session: AsyncSession,
    *,
    first_name: str | None,
    last_name: str | None,
    email: str | None,
    phone: str | None,
    password: str,
    referral_code: str | None,
    country_code: str | None,
    city: str | None,
    settings: Settings,
) -> tuple[Customer, ClubAccount]:
    """A lead with a club account (the marketing club), and CustomerRegistered (source "club")
    carrying the membership. Raises InvalidEmail/InvalidPhone, and AlreadyRegistered when the
    email or phone belongs to a file (its owner signs in, or claims it with a code)."""
    identities: list[Identity] = []
    if (email or "").strip():
        identities.append(Identity(IdentityKind.email, normalise_email(email or "")))
    if (phone or "").strip():
        region = region_or(country_code, settings.default_region)
        identities.append(Identity(IdentityKind.phone, normalise_phone(phone or "", region=region)))
    held = await customers.owners(session, identities)
    for identity in identities:
        if identity in held:
            raise AlreadyRegistered(identity.kind.value)
    password_hash = await hash_password(password)
    book = customers.Book(held)
    state = book.create(
        identities,
        details=customers.Details(
            first_name=first_name, last_name=last_name, country_code=country_code, city=city
        ),
        stage=LifecycleStage.lead,
    )
    try:
        await book.flush(session, context="club_signup")
    except customers.IdentityRace as race:  # the same person signing up twice at once
        raise AlreadyRegistered(race.identity.kind.value) from None
    account = ClubAccount(
        customer_id=state.id,
        status=ClubStatus.member.value,
        joined_via="signup",
        joined_at=utcnow(),
        password_hash=password_hash,
    )
    session.add(account)
    customer = await session.get(Customer, state.id)
    assert customer is not None
    code = (referral_code or "").strip()
    if code:
        customer.referred_by_code = code
        customer.acquisition_channel = "referral"
    await session.flush()
    snap = await customers.snapshot(session, customer)
    await outbox.add_many(session, [customers.registered_event(snap, source="club")])
    return customer, account


@dataclass(frozen=True, slots=True)
class PaidPurchase:
    customer_id: uuid.UUID
    occurred_at: datetime
    event_id: str


_ENROL = text(
    "INSERT INTO club_accounts (customer_id, status, joined_via, joined_at) "
    "SELECT p.customer_id, 'member', 'purchase', p.joined_at "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:joined AS timestamptz[])) AS p(customer_id, joined_at) "
    "WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = p.customer_id) "
    "ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id"
)


async def enrol_purchasers(
    session: AsyncSession, purchases: Sequence[PaidPurchase]
) -> set[uuid.UUID]:
    """The retention club: every customer with a paid purchase is a member ('member' until a
    code proves their phone or email). Set-based: one insert for the batch, then one
    CustomerUpdated per customer newly enrolled. Returns those customers."""
    first: dict[uuid.UUID, PaidPurchase] = {}
    for p in purchases:
        first.setdefault(p.customer_id, p)
    if not first:
        return set()
    rows = await session.execute(
        _ENROL,
        {"ids": list(first), "joined": [p.occurred_at for p in first.values()]},
    )
    enrolled = set(rows.scalars())
    if not enrolled:
        return enrolled
    # Snapshots in three statements whatever the batch: customers, identities, the rest.
    ids = sorted(enrolled)
    found = (await session.scalars(select(Customer).where(Customer.id.in_(ids)))).all()
    held: dict[uuid.UUID, list[Identity]] = {}
    for cid, kind, value in (
        await session.execute(
            select(CustomerIdentity.customer_id, CustomerIdentity.kind, CustomerIdentity.value)
            .where(CustomerIdentity.customer_id.in_(ids))
            .order_by(CustomerIdentity.id)
        )
    ).all():
        held.setdefault(cid, []).append(Identity(IdentityKind(kind), value))
    extras = await snapshots.load_extras(session, ids)
    events: list[OutboxEvent] = []
    for customer in sorted(found, key=lambda c: str(c.id)):
        snap = customers.build_snapshot(
            customer, held.get(customer.id, []), extras.get(customer.id)
        )
        events.append(
            OutboxEvent(
                CUSTOMERS_TOPIC,
                str(customer.id),
                profile_pb2.CustomerUpdated(
                    customer=snap, changed_fields=["club_joined_at", "club_status"]
                ),
                # One enrolment per customer, whichever purchase event caused it.
                event_id=cloudevents.deterministic_id("profile", "club-enrolled", str(customer.id)),
            )
        )
    await outbox.add_many(session, events)
    log.info("club_enrolled", count=len(enrolled))
    return enrolled


async def _ensure_account(
    session: AsyncSession, customer_id: uuid.UUID, *, joined_via: str
) -> ClubAccount:
    """The customer's account, locked, created if missing."""
    await session.execute(
        pg_insert(ClubAccount)
        .values(
            customer_id=customer_id,
            status=ClubStatus.member.value,
            joined_via=joined_via,
            joined_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=[ClubAccount.customer_id])
    )
    account = await session.scalar(
        select(ClubAccount)
        .where(ClubAccount.customer_id == customer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert account is not None
    return account


async def _mark_verified(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    joined_via: str,
    cause_id: str,
) -> ClubAccount:
    """Ensures the account and marks it verified; CustomerUpdated when membership changed."""
    before = await session.get(ClubAccount, customer_id, populate_existing=True)
    account = await _ensure_account(session, customer_id, joined_via=joined_via)
    changed = []
    if before is None:
        changed.append("club_joined_at")
    if account.status != ClubStatus.verified.value:
        account.status = ClubStatus.verified.value
        account.verified_at = utcnow()
        changed.append("club_status")
    await session.flush()
    if changed:
        customer = await session.get(Customer, customer_id)
        assert customer is not None
        await emit_club_changed(
            session,
            customer=customer,
            changed_fields=sorted(changed),
            cause_id=cause_id,
        )
    return account


# -- one-time codes ------------------------------------------------------------------------


def code_hash(code: str, *, customer_id: uuid.UUID, purpose: str, secret: str) -> str:
    key = hashlib.sha256(f"vafa-one-time-code:{secret}".encode()).digest()
    return hmac.new(key, f"{customer_id}:{purpose}:{code}".encode(), hashlib.sha256).hexdigest()


def new_code(digits: int) -> str:
    return f"{secrets.randbelow(10**digits):0{digits}d}"


async def send_code(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    purpose: CodePurpose,
    destination: Identity,
    settings: Settings,
) -> bool:
    """Issues a code for the purpose to the destination (the customer's email or phone) and
    asks messaging to send it; earlier codes of the purpose are spent. False, quietly, when a
    code of the purpose was sent less than `code_resend_seconds` ago."""
    secret = secret_of(settings)
    now = utcnow()
    # Serialises code requests of one customer, so two at once cannot both pass the pause.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"otp:{customer_id}"}
    )
    recent = await session.scalar(
        select(OneTimeCode.id).where(
            OneTimeCode.customer_id == customer_id,
            OneTimeCode.purpose == purpose.value,
            OneTimeCode.spent_at.is_(None),
            OneTimeCode.created_at > now - timedelta(seconds=settings.code_resend_seconds),
        )
    )
    if recent is not None:
        return False
    await session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.customer_id == customer_id,
            OneTimeCode.purpose == purpose.value,
            OneTimeCode.spent_at.is_(None),
        )
        .values(spent_at=now)
    )
    code = new_code(settings.code_digits)
    expires_at = now + timedelta(seconds=settings.code_ttl_seconds)
    channel = "email" if destination.kind == IdentityKind.email else "sms"
    session.add(
        OneTimeCode(
            customer_id=customer_id,
            purpose=purpose.value,
            channel=channel,
            destination=destination.value,
            code_hash=code_hash(
                code, customer_id=customer_id, purpose=purpose.value, secret=secret
            ),
            expires_at=expires_at,
            created_at=now,
        )
    )
    await session.flush()
    await outbox.add(
        session,
        topic=CUSTOMERS_TOPIC,
        key=str(customer_id),
        message=profile_pb2.OneTimeCodeRequested(
            customer_id=str(customer_id),
            channel=channel,
            destination=destination.value,
            code=code,
            purpose=purpose.value,
            expires_at=timestamp(expires_at),
            language=settings.club_language,
        ),
    )
    return True


async def redeem_code(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    purpose: CodePurpose,
    code: str,
    settings: Settings,
) -> OneTimeCode | None:
    """The live code, spent, when `code` is it; otherwise None, after counting the wrong try
    (the code dies at `code_max_attempts`). The live code row is locked, so two tries of one
    code at once cannot both succeed."""
    secret = secret_of(settings)
    live = await session.scalar(
        select(OneTimeCode)
        .where(
            OneTimeCode.customer_id == customer_id,
            OneTimeCode.purpose == purpose.value,
            OneTimeCode.spent_at.is_(None),
            OneTimeCode.expires_at > utcnow(),
        )
        .order_by(OneTimeCode.created_at.desc(), OneTimeCode.id.desc())
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if live is None:
        return None
    given = code_hash(code.strip(), customer_id=customer_id, purpose=purpose.value, secret=secret)
    if hmac.compare_digest(given, live.code_hash):
        live.spent_at = utcnow()
        await session.flush()
        return live
    live.attempts += 1
    if live.attempts >= settings.code_max_attempts:
        live.spent_at = utcnow()
    await session.flush()
    return None


async def request_code(
    session: AsyncSession,
    *,
    identity: Identity,
    purpose: CodePurpose,
    settings: Settings,
) -> None:
    """A sign-in or reset code to the customer holding the identity, sent to that identity.
    Nobody holding it, or the identifier locked: nothing happens, and the caller answers the
    same way."""
    secret_of(settings)
    locked = await session.scalar(_LOCKED_UNTIL, {"identifier": _throttle_key(identity)})
    if locked is not None:
        return
    customer = await customers.find_by_identity(session, identity=identity)
    if customer is None:
        return
    await send_code(
        session,
        customer_id=customer.id,
        purpose=purpose,
        destination=identity,
        settings=settings,
    )


# -- signing in ----------------------------------------------------------------------------


async def sign_in_with_password(
    session: AsyncSession, *, identity: Identity, password: str, settings: Settings
) -> uuid.UUID | None:
    """The member's customer id, or None (failure counted). Raises Locked."""
    secret_of(settings)
    await ensure_not_locked(session, identity)
    customer = await customers.find_by_identity(session, identity=identity)
    account = await get_account(session, customer.id) if customer is not None else None
    if await password_matches(account.password_hash if account else None, password):
        assert account is not None
        await clear_failures(session, identity)
        if _hasher.check_needs_rehash(account.password_hash or ""):
            account.password_hash = await hash_password(password)
        return account.customer_id
    await record_failure(session, identity, settings=settings)
    return None


async def sign_in_with_code(
    session: AsyncSession, *, identity: Identity, code: str, settings: Settings
) -> uuid.UUID | None:
    """Redeems a sign-in code: the customer id (the account created if the file had none, and
    verified: the code proved the identity), or None (failure counted). Raises Locked."""
    return await _redeem_for(
        session,
        identity=identity,
        code=code,
        purpose=CodePurpose.sign_in,
        settings=settings,
    )


async def reset_password(
    session: AsyncSession,
    *,
    identity: Identity,
    code: str,
    new_password: str,
    settings: Settings,
) -> uuid.UUID | None:
    """Redeems a reset code and sets the password: the customer id, or None (failure
    counted). Raises Locked."""
    customer_id = await _redeem_for(
        session,
        identity=identity,
        code=code,
        purpose=CodePurpose.password_reset,
        settings=settings,
    )
    if customer_id is None:
        return None
    account = await session.get(ClubAccount, customer_id)
    assert account is not None
    account.password_hash = await hash_password(new_password)
    await session.flush()
    return customer_id


async def _redeem_for(
    session: AsyncSession,
    *,
    identity: Identity,
    code: str,
    purpose: CodePurpose,
    settings: Settings,
) -> uuid.UUID | None:
    secret_of(settings)
    await ensure_not_locked(session, identity)
    customer = await customers.find_by_identity(session, identity=identity)
    spent = (
        await redeem_code(
            session, customer_id=customer.id, purpose=purpose, code=code, settings=settings
        )
        if customer is not None
        else None
    )
    if customer is None or spent is None:
        await record_failure(session, identity, settings=settings)
        return None
    await clear_failures(session, identity)
    await _mark_verified(
        session, customer_id=customer.id, joined_via="code", cause_id=f"otp:{spent.id}"
    )
    return customer.id


# -- verification (signed in) ----------------------------------------------------------------


class NoDestination(Problem):
    def __init__(self, channel: str) -> None:
        super().__init__(
            422,
            f"Your file has no {'email address' if channel == 'email' else 'phone number'} "
            "to send a code to.",
            type="validation",
            errors=[{"pointer": "/body/channel", "detail": "no such contact on file"}],
        )


async def request_verification(
    session: AsyncSession, *, customer_id: uuid.UUID, channel: str, settings: Settings
) -> bool:
    """A verify code to the member's phone ('sms') or email; False when paused (see
    `send_code`). Raises NoDestination when the file has no such contact."""
    kind = IdentityKind.email if channel == "email" else IdentityKind.phone
    found = [i for i in await customers.identities_of(session, customer_id) if i.kind == kind]
    if not found:
        raise NoDestination(channel)
    return await send_code(
        session,
        customer_id=customer_id,
        purpose=CodePurpose.verify,
        destination=found[0],
        settings=settings,
    )


async def verify(
    session: AsyncSession, *, customer_id: uuid.UUID, code: str, settings: Settings
) -> ClubAccount | None:
    """Redeems a verify code: the account, now verified; None for a wrong or dead code."""
    spent = await redeem_code(
        session,
        customer_id=customer_id,
        purpose=CodePurpose.verify,
        code=code,
        settings=settings,
    )
    if spent is None:
        return None
    return await _mark_verified(
        session, customer_id=customer_id, joined_via="code", cause_id=f"otp:{spent.id}"
    )


# Outbox rows of sent codes keep the code in their payload until the kit purges them (a day):
# the worker blanks them as soon as they are published.
SCRUB_SENT_CODES = text(
    "UPDATE outbox SET payload = ''::bytea WHERE sent_at IS NOT NULL AND payload <> ''::bytea "
    "AND headers @> CAST(:type AS jsonb)"
)
SCRUB_TYPE = '[["ce_type", "vafa.events.v1.OneTimeCodeRequested"]]'


async def scrub_sent_codes(session: AsyncSession) -> int:
    result = await session.execute(SCRUB_SENT_CODES, {"type": SCRUB_TYPE})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- the account follows its file (merge, unmerge, erasure) ---------------------------------

# A merge moves the merged file's account to the survivor when the survivor has none (the
# member keeps signing in with the same password, now into the surviving file); otherwise the
# merged file keeps it, inert, since a merged file is never read. Live codes of the merged
# file are spent either way.
_MOVE_TO_SURVIVOR = text(
    "UPDATE club_accounts SET customer_id = :s, merged_from = :m, updated_at = now() "
    "WHERE customer_id = :m AND NOT EXISTS (SELECT 1 FROM club_accounts WHERE customer_id = :s) "
    "RETURNING customer_id"
)
_MOVE_BACK = text(
    "UPDATE club_accounts SET customer_id = :r, merged_from = NULL, updated_at = now() "
    "WHERE customer_id = :s AND merged_from = :r RETURNING customer_id"
)
_SPEND_CODES = text(
    "UPDATE one_time_codes SET spent_at = now() WHERE customer_id = ANY(CAST(:ids AS uuid[])) "
    "AND spent_at IS NULL"
)
# An erased file (and the files merged into it) keeps no credentials or codes.
_ERASE = text(
    "WITH gone AS (SELECT CAST(:c AS uuid) AS id UNION "
    " SELECT id FROM customers WHERE merged_into = CAST(:c AS uuid)), "
    "codes AS (DELETE FROM one_time_codes WHERE customer_id IN (SELECT id FROM gone)) "
    "DELETE FROM club_accounts WHERE customer_id IN (SELECT id FROM gone)"
)
# Failure counts outlive nothing: a day after the last failure they go (they hold an
# identifier, which is personal data).
PURGE_THROTTLE = text(
    "DELETE FROM sign_in_throttle WHERE updated_at < now() - interval '1 day' "
    "AND (locked_until IS NULL OR locked_until < now())"
)


async def _club_changed(session: AsyncSession, customer_id: uuid.UUID, cause_id: str) -> None:
    customer = await session.get(Customer, customer_id)
    if customer is not None and customer.erased_at is None:
        await emit_club_changed(
            session,
            customer=customer,
            changed_fields=["club_joined_at", "club_status"],
            cause_id=cause_id,
        )


async def follow_merge(
    session: AsyncSession, *, survivor_id: uuid.UUID, merged_id: uuid.UUID, merge_id: str
) -> bool:
    """The merged file's account moves to the survivor (if it has none): True when it moved
    (and the survivor's CustomerUpdated is published)."""
    await session.execute(_SPEND_CODES, {"ids": [merged_id]})
    moved = await session.scalar(_MOVE_TO_SURVIVOR, {"s": survivor_id, "m": merged_id})
    if moved is not None:
        await _club_changed(session, survivor_id, f"club-merge:{merge_id}")
    return moved is not None


async def follow_unmerge(
    session: AsyncSession, *, survivor_id: uuid.UUID, restored_id: uuid.UUID, merge_id: str
) -> bool:
    """An account a merge moved goes back to the restored file: True when it did."""
    moved = await session.scalar(_MOVE_BACK, {"s": survivor_id, "r": restored_id})
    if moved is None:
        return False
    await session.execute(_SPEND_CODES, {"ids": [survivor_id]})
    await _club_changed(session, survivor_id, f"club-unmerge:{merge_id}")
    await _club_changed(session, restored_id, f"club-unmerge:{merge_id}")
    return True


async def follow_erasure(session: AsyncSession, *, customer_id: uuid.UUID) -> None:
    await session.execute(_ERASE, {"c": customer_id})

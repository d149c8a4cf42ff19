"""Consents per channel: the snapshot in `consents`, every change in `consent_changes`, each
change evented (ConsentChanged, and CustomerUpdated with the new snapshot). Unsubscribe links
carry a signed token; inbound SMS keywords ("لغو", "STOP", "ԴԱԴԱՐ", ...) revoke SMS consent."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.outbox import OutboxEvent
from vafa.profile.consents.schemas import Channel
from vafa.profile.customers import service as customers
from vafa.profile.customers.identities import Identity, IdentityKind, fold
from vafa.profile.customers.snapshot import consent_message
from vafa.profile.events import CUSTOMERS_TOPIC, outbox
from vafa.profile.models import Consent, ConsentChange
from vafa.profile.timeline import service as timeline

UNSUBSCRIBE_AUDIENCE = "vafa-unsubscribe"


@dataclass(frozen=True, slots=True)
class ConsentState:
    channel: Channel
    granted: bool
    source: str
    changed_at: datetime


class InvalidToken(ValueError):
    pass


_UPSERT = text(
    "INSERT INTO consents (customer_id, channel, granted, source, changed_at) "
    "VALUES (:cid, :channel, :granted, :source, :at) "
    "ON CONFLICT (customer_id, channel) DO UPDATE SET granted = EXCLUDED.granted, "
    "source = EXCLUDED.source, changed_at = EXCLUDED.changed_at"
)


async def current(session: AsyncSession, customer_id: uuid.UUID) -> list[Consent]:
    rows = await session.scalars(
        select(Consent).where(Consent.customer_id == customer_id).order_by(Consent.channel)
    )
    return list(rows.all())


async def history(session: AsyncSession, customer_id: uuid.UUID) -> list[ConsentChange]:
    rows = await session.scalars(
        select(ConsentChange)
        .where(ConsentChange.customer_id == customer_id)
        .order_by(ConsentChange.changed_at.desc(), ConsentChange.id.desc())
    )
    return list(rows.all())


async def set_consent(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    channel: Channel | str,
    granted: bool,
    source: str,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> tuple[ConsentState, bool]:
    """Sets the customer's consent on a channel: (the consent now, whether it changed). A
    change is kept in the history and published (ConsentChanged, then CustomerUpdated with
    changed_fields ["consents"]); setting what is already in force changes nothing. The file
    is locked, so concurrent changes apply one after the other. Raises kit NotFound for an
    unknown (or merged) customer."""
    channel = Channel(channel)
    customer = await customers.lock_file(session, customer_id)
    existing = await session.scalar(
        select(Consent).where(Consent.customer_id == customer_id, Consent.channel == channel.value)
    )
    if existing is not None and existing.granted == granted:
        return ConsentState(channel, existing.granted, existing.source, existing.changed_at), False
    at = at or datetime.now(UTC)
    await session.execute(
        _UPSERT,
        {
            "cid": customer_id,
            "channel": channel.value,
            "granted": granted,
            "source": source,
            "at": at,
        },
    )
    change = ConsentChange(
        customer_id=customer_id,
        channel=channel.value,
        granted=granted,
        source=source,
        detail=detail or {},
        changed_at=at,
    )
    session.add(change)
    await session.flush()
    if existing is not None:
        await session.refresh(existing)
    verb = "granted" if granted else "revoked"
    await timeline.add_entry(
        session,
        customer_id=customer_id,
        kind="consent.changed",
        occurred_at=at,
        source="consent",
        source_id=str(change.id),
        summary=f"{channel.value.upper()} consent {verb} ({source}).",
        data={"channel": channel.value, "granted": granted, "source": source},
    )
    event = profile_pb2.ConsentChanged(
        customer_id=str(customer_id),
        consent=consent_message(channel.value, granted, source, at),
    )
    await outbox.add_many(
        session,
        [
            OutboxEvent(
                CUSTOMERS_TOPIC,
                str(customer_id),
                event,
                event_id=cloudevents.deterministic_id("profile", "consent", str(change.id)),
            )
        ],
    )
    await customers.emit_updated(
        session, customer=customer, changed_fields=["consents"], cause_id=f"consent-{change.id}"
    )
    return ConsentState(channel, granted, source, at), True


def unsubscribe_token(customer_id: uuid.UUID, channel: Channel, *, secret: str) -> str:
    """A signed token naming the file and the channel. No expiry: the link in an old email
    must still work."""
    claims = {
        "sub": str(customer_id),
        "ch": channel.value,
        "aud": UNSUBSCRIBE_AUDIENCE,
        "iat": int(datetime.now(UTC).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def read_token(token: str, *, secret: str) -> tuple[uuid.UUID, Channel]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=UNSUBSCRIBE_AUDIENCE,
            options={"require": ["sub", "aud"]},
        )
        return uuid.UUID(str(claims["sub"])), Channel(claims["ch"])
    except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
        raise InvalidToken("this unsubscribe link is not valid") from exc


_PUNCTUATION = re.compile(r"[\s\.\!\?\-_,،؛:;\"'«»()]+")
_TRAILING_DIGITS = re.compile(r"\d+$")


def keyword_form(text: str) -> str:
    """An SMS reduced for keyword matching: folded (Arabic/Persian letter forms, every digit
    ASCII, case), spaces and punctuation removed, trailing digits dropped ("لغو ۱۱" -> "لغو",
    the panels' "cancel 11" form)."""
    return _TRAILING_DIGITS.sub("", _PUNCTUATION.sub("", fold(text)))


def is_keyword(text: str, keywords: Sequence[str]) -> bool:
    form = keyword_form(text)
    return bool(form) and form in {keyword_form(k) for k in keywords}


async def inbound_sms(
    session: AsyncSession,
    *,
    phone: str,
    text: str,
    keywords: Sequence[str],
    message_id: str | None = None,
) -> tuple[bool, uuid.UUID | None, ConsentState | None]:
    """An SMS received from `phone` (E.164): when it is an opt-out keyword and the sender has a
    file, SMS consent is revoked (source "sms_keyword"). Returns (keyword?, customer id,
    the SMS consent after)."""
    keyword = is_keyword(text, keywords)
    customer = await customers.find_by_identity(
        session, identity=Identity(IdentityKind.phone, phone)
    )
    if customer is None:
        return keyword, None, None
    if keyword:
        state, _ = await set_consent(
            session,
            customer_id=customer.id,
            channel=Channel.sms,
            granted=False,
            source="sms_keyword",
            detail={"text": text, "message_id": message_id},
        )
        return True, customer.id, state
    row = await session.scalar(
        select(Consent).where(Consent.customer_id == customer.id, Consent.channel == "sms")
    )
    if row is None:
        return False, customer.id, None
    return False, customer.id, ConsentState(Channel.sms, row.granted, row.source, row.changed_at)

"""Search and lists over customer files: filters on any field, custom field, tag, consent and
effective date; a folded name search; an opaque keyset cursor on (created_at, id), newest
first, so pages stay stable while files are added. Merged-away files are never listed.

Names, cities and provinces compare folded by the database's own `vafa_fold` (migration
0002_file): the query is folded by the same function, so ي/ی, ك/ک and Persian/Arabic/Latin
digits read alike on both sides. `q` runs on `customers.search_name` (folded, trigram-indexed).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    cast,
    exists,
    extract,
    false,
    func,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.profile.customers.identities import (
    InvalidEmail,
    InvalidPhone,
    ascii_digits,
    normalise_email,
    normalise_phone,
)
from vafa.profile.dates import recurrence
from vafa.profile.models import (
    ClubAccount,
    Consent,
    CustomerIdentity,
    CustomerTag,
    CustomFieldDefinition,
    EffectiveDate,
)
from vafa.profile.models import (
    Customer as C,
)
from vafa.profile.search.schemas import CustomerFilters


class InvalidFilter(ValueError):
    """A filter value that cannot be used; `field` is the query parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def fold(value: Any) -> ColumnElement[str]:
    return func.vafa_fold(value)


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_TRUE = {"true", "yes", "1", "بله"}
_FALSE = {"false", "no", "0", "خیر"}


def custom_value(definition: CustomFieldDefinition, raw: str) -> Any:
    """A query's "key:value" value as the JSON the field stores (raises ValueError)."""
    text = ascii_digits(raw).strip()
    kind = definition.type
    if kind == "number":
        number = float(text)
        return int(number) if number.is_integer() else number
    if kind == "boolean":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("not a boolean (true/false)")
    if kind == "date":
        return date.fromisoformat(text).isoformat()
    if kind in ("picklist", "multi_picklist"):
        if definition.options and raw.strip() not in definition.options:
            raise ValueError(f"not one of {', '.join(definition.options)}")
        return [raw.strip()] if kind == "multi_picklist" else raw.strip()
    return raw.strip()


async def conditions(
    session: AsyncSession, f: CustomerFilters, *, default_region: str, today: date
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of the filters (`today`: the local day upcoming dates count from).
    Raises InvalidFilter naming the parameter."""
    where: list[ColumnElement[bool]] = [C.merged_into.is_(None)]
    if f.q:
        words = f.q.split()
        if not words:
            raise InvalidFilter("q", "give at least one word")
        for word in words:
            where.append(
                C.search_name.like(func.concat("%", fold(_like_escape(word)), "%"), escape="\\")
            )
    if f.first_name:
        where.append(fold(C.first_name) == fold(f.first_name))
    if f.last_name:
        where.append(fold(C.last_name) == fold(f.last_name))
    if f.email:
        try:
            email = normalise_email(f.email)
        except InvalidEmail as exc:
            raise InvalidFilter("email", str(exc)) from exc
        where.append(_has_identity("email", email))
    if f.phone:
        try:
            phone = normalise_phone(f.phone, region=default_region)
        except InvalidPhone as exc:
            raise InvalidFilter("phone", str(exc)) from exc
        where.append(_has_identity("phone", phone))
    if f.city:
        where.append(fold(C.city).in_([fold(v) for v in f.city]))
    if f.province:
        where.append(fold(C.province).in_([fold(v) for v in f.province]))
    if f.country_code:
        where.append(C.country_code.in_([v.strip().upper() for v in f.country_code]))
    if f.gender:
        where.append(C.gender.in_(f.gender))
    if f.kind:
        where.append(C.kind == f.kind)
    if f.lifecycle_stage:
        where.append(C.lifecycle_stage.in_(f.lifecycle_stage))
    if f.acquisition_channel:
        where.append(C.acquisition_channel.in_(f.acquisition_channel))
    if f.acquisition_campaign:
        where.append(C.acquisition_campaign == f.acquisition_campaign)
    if f.club_status:
        status = func.coalesce(
            select(ClubAccount.status).where(ClubAccount.customer_id == C.id).scalar_subquery(),
            "none",
        )
        where.append(status.in_(f.club_status))
    if f.created_from:
        where.append(C.created_at >= f.created_from)
    if f.created_to:
        where.append(C.created_at < f.created_to)
    if f.registered_from or f.registered_to:
        joined = [ClubAccount.customer_id == C.id]
        if f.registered_from:
            joined.append(ClubAccount.joined_at >= f.registered_from)
        if f.registered_to:
            joined.append(ClubAccount.joined_at < f.registered_to)
        where.append(exists().where(*joined))
    if f.birth_month:
        where.append(extract("month", C.birth_date) == f.birth_month)
    for tag in f.tag:
        where.append(
            exists().where(CustomerTag.customer_id == C.id, CustomerTag.tag == tag.strip())
        )
    if f.custom:
        where += await _custom_conditions(session, f.custom)
    for channel in f.consent:
        where.append(
            exists().where(Consent.customer_id == C.id, Consent.channel == channel, Consent.granted)
        )
    for channel in f.no_consent:
        where.append(
            ~exists().where(
                Consent.customer_id == C.id, Consent.channel == channel, Consent.granted
            )
        )
    if f.date_kind or f.date_within_days is not None:
        on_date = [EffectiveDate.customer_id == C.id]
        if f.date_kind:
            on_date.append(EffectiveDate.kind == f.date_kind)
        if f.date_within_days is not None:
            # Every stored (calendar, month, day) falling in the window, with the recurrence
            # rules of the dates feature (Esfand 30 / 29 February in short years).
            days = recurrence.window_keys(today, f.date_within_days)
            on_date.append(
                or_(
                    *(
                        and_(
                            EffectiveDate.calendar == cal,
                            EffectiveDate.month == m,
                            EffectiveDate.day == d,
                        )
                        for cal, m, d in sorted(days)
                    )
                )
                if days
                else false()
            )
        where.append(exists().where(*on_date))
    return where


def _has_identity(kind: str, value: str) -> ColumnElement[bool]:
    return exists().where(
        CustomerIdentity.customer_id == C.id,
        CustomerIdentity.kind == kind,
        CustomerIdentity.value == value,
    )


async def _custom_conditions(
    session: AsyncSession, pairs: Sequence[str]
) -> list[ColumnElement[bool]]:
    parsed: list[tuple[str, str]] = []
    for pair in pairs:
        key, sep, value = pair.partition(":")
        if not sep or not key.strip():
            raise InvalidFilter("custom", f'"{pair}" is not "key:value"')
        parsed.append((key.strip(), value))
    keys = sorted({k for k, _ in parsed})
    found = {
        d.key: d
        for d in (
            await session.scalars(
                select(CustomFieldDefinition).where(CustomFieldDefinition.key.in_(keys))
            )
        ).all()
    }
    out: list[ColumnElement[bool]] = []
    for key, raw in parsed:
        definition = found.get(key)
        if definition is None:
            raise InvalidFilter("custom", f'no custom field has the key "{key}"')
        try:
            value = custom_value(definition, raw)
        except ValueError as exc:
            raise InvalidFilter("custom", f'"{key}": {exc}') from exc
        # Containment, so the GIN (jsonb_path_ops) index on custom_fields answers it.
        out.append(C.custom_fields.op("@>")(cast(literal(json.dumps({key: value})), JSONB)))
    return out


# -- the page ------------------------------------------------------------------------------


class InvalidCursor(ValueError):
    pass


def encode_cursor(created_at: datetime, customer_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(customer_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, cid = json.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, uuid.UUID(cid)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidCursor("the cursor is not one this API issued") from exc


_EMAILS = (
    select(func.array_agg(aggregate_order_by(CustomerIdentity.value, CustomerIdentity.id)))
    .where(CustomerIdentity.customer_id == C.id, CustomerIdentity.kind == "email")
    .scalar_subquery()
)
_PHONES = (
    select(func.array_agg(aggregate_order_by(CustomerIdentity.value, CustomerIdentity.id)))
    .where(CustomerIdentity.customer_id == C.id, CustomerIdentity.kind == "phone")
    .scalar_subquery()
)
_CLUB = func.coalesce(
    select(ClubAccount.status).where(ClubAccount.customer_id == C.id).scalar_subquery(), "none"
)


def _summary_select() -> Select[Any]:
    return select(
        C.id,
        C.first_name,
        C.last_name,
        C.kind,
        C.lifecycle_stage,
        _EMAILS.label("emails"),
        _PHONES.label("phones"),
        C.city,
        C.province,
        C.country_code,
        C.gender,
        C.birth_date,
        C.acquisition_channel,
        _CLUB.label("club_status"),
        C.created_at,
    )


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


async def page(
    session: AsyncSession,
    *,
    where: Sequence[ColumnElement[bool]],
    limit: int,
    cursor: str | None = None,
) -> Page:
    """One page, newest first. Raises InvalidCursor."""
    query = _summary_select().where(*where)
    if cursor:
        at, cid = decode_cursor(cursor)
        query = query.where(tuple_(C.created_at, C.id) < tuple_(at, cid))
    query = query.order_by(C.created_at.desc(), C.id.desc()).limit(limit + 1)
    rows = []
    for r in (await session.execute(query)).mappings():
        row = dict(r)
        row["emails"] = row["emails"] or []
        row["phones"] = row["phones"] or []
        rows.append(row)
    if len(rows) > limit:
        last = rows[limit - 1]
        return Page(rows[:limit], encode_cursor(last["created_at"], last["id"]))
    return Page(rows, None)


async def every_row(
    session: AsyncSession, *, where: Sequence[ColumnElement[bool]], batch: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    """Every matching customer, newest first, a keyset page at a time (for the export)."""
    cursor: str | None = None
    while True:
        got = await page(session, where=where, limit=batch, cursor=cursor)
        for row in got.rows:
            yield row
        if got.next_cursor is None:
            return
        cursor = got.next_cursor

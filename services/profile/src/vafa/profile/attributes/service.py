"""Custom field definitions and value validation, tags and notes. Domain logic only."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.errors import Conflict, NotFound
from vafa.profile.attributes.schemas import (
    PICKLISTS,
    CustomFieldCreate,
    CustomFieldUpdate,
    FieldType,
)
from vafa.profile.customers.identities import ascii_digits
from vafa.profile.models import CustomerNote, CustomerTag, CustomFieldDefinition

MAX_TEXT = 2000
MAX_TAG = 64


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid value: its location below the request body, and why."""

    loc: tuple[str, ...]
    message: str
    type: str = "value_error"


class InvalidFields(ValueError):
    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(f"/{'/'.join(e.loc)}: {e.message}" for e in errors))
        self.errors = list(errors)


async def definitions(session: AsyncSession) -> dict[str, CustomFieldDefinition]:
    rows = await session.scalars(select(CustomFieldDefinition).order_by(CustomFieldDefinition.key))
    return {d.key: d for d in rows.all()}


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, int | float):
        number: int | float = value
    elif isinstance(value, str):
        # Persian/Arabic digits and the Persian decimal separator from forms and imports.
        raw = ascii_digits(value).replace("٫", ".").replace(",", "").strip()
        try:
            number = int(raw) if raw.lstrip("-").isdigit() else float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
    else:
        raise ValueError("expected a number")
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def coerce(definition: CustomFieldDefinition, value: Any) -> Any:
    """The stored (JSON) form of a value of this field; ValueError says what is wrong."""
    kind = FieldType(definition.type)
    if kind == FieldType.text:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        if len(value) > MAX_TEXT:
            raise ValueError(f"at most {MAX_TEXT} characters")
        return value.strip()
    if kind == FieldType.number:
        return _number(value)
    if kind == FieldType.boolean:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if kind == FieldType.date:
        if not isinstance(value, str):
            raise ValueError("expected an ISO 8601 date (YYYY-MM-DD)")
        try:
            return date.fromisoformat(ascii_digits(value).strip()).isoformat()
        except ValueError:
            raise ValueError("expected an ISO 8601 date (YYYY-MM-DD)") from None
    options = definition.options
    if kind == FieldType.picklist:
        if not isinstance(value, str) or value.strip() not in options:
            raise ValueError(f"expected one of: {', '.join(options)}")
        return value.strip()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of options")
    picked = list(dict.fromkeys(v.strip() for v in value))
    unknown = [v for v in picked if v not in options]
    if unknown:
        raise ValueError(f"not options of this field: {', '.join(unknown)}")
    return picked


def validate_values(
    defs: Mapping[str, CustomFieldDefinition], values: Mapping[str, Any]
) -> dict[str, Any]:
    """Custom field values as stored (None: remove the value). Raises InvalidFields naming
    every bad key (location custom_fields/<key>)."""
    out: dict[str, Any] = {}
    errors: list[FieldError] = []
    for key, value in values.items():
        definition = defs.get(key)
        if definition is None:
            errors.append(FieldError(("custom_fields", key), "no custom field has this key"))
            continue
        if value is None:
            out[key] = None
            continue
        try:
            out[key] = coerce(definition, value)
        except ValueError as exc:
            errors.append(
                FieldError(("custom_fields", key), str(exc), f"type_error.{definition.type}")
            )
    if errors:
        raise InvalidFields(errors)
    return out


async def create_definition(
    session: AsyncSession, *, body: CustomFieldCreate
) -> CustomFieldDefinition:
    if await session.get(CustomFieldDefinition, body.key) is not None:
        raise Conflict(f"A custom field with the key {body.key!r} exists.", key=body.key)
    definition = CustomFieldDefinition(
        key=body.key, label=body.label, type=body.type.value, options=body.options
    )
    session.add(definition)
    await session.flush()
    return definition


async def get_definition(session: AsyncSession, key: str) -> CustomFieldDefinition:
    definition = await session.get(CustomFieldDefinition, key)
    if definition is None:
        raise NotFound(f"No custom field has the key {key!r}.", key=key)
    return definition


async def update_definition(
    session: AsyncSession, *, key: str, body: CustomFieldUpdate
) -> CustomFieldDefinition:
    """Label and options only: a field's type never changes (stored values would lie)."""
    definition = await get_definition(session, key)
    if body.label is not None:
        definition.label = body.label
    if body.options is not None:
        if definition.type not in PICKLISTS:
            raise InvalidFields([FieldError(("options",), "only picklists have options")])
        options = list(dict.fromkeys(o.strip() for o in body.options if o.strip()))
        if not options:
            raise InvalidFields([FieldError(("options",), "a picklist needs at least one option")])
        definition.options = options
    await session.flush()
    return definition


async def delete_definition(session: AsyncSession, *, key: str) -> int:
    """Deletes the field and its values on every file; the number of files that held one."""
    definition = await get_definition(session, key)
    result = await session.execute(
        text(
            "UPDATE customers SET custom_fields = custom_fields - CAST(:key AS text), "
            "updated_at = now() WHERE custom_fields ? CAST(:key AS text)"
        ),
        {"key": key},
    )
    await session.delete(definition)
    await session.flush()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def clean_tags(tags: Sequence[str]) -> list[str]:
    """Trimmed, inner whitespace collapsed, de-duplicated; ValueError for an over-long tag."""
    out: list[str] = []
    for tag in tags:
        cleaned = " ".join(tag.split())
        if not cleaned:
            continue
        if len(cleaned) > MAX_TAG:
            raise ValueError(f"a tag has at most {MAX_TAG} characters")
        if cleaned not in out:
            out.append(cleaned)
    return out


async def tags_of(session: AsyncSession, customer_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(CustomerTag.tag)
        .where(CustomerTag.customer_id == customer_id)
        .order_by(CustomerTag.tag)
    )
    return list(rows.all())


async def add_tags(session: AsyncSession, *, customer_id: uuid.UUID, tags: Sequence[str]) -> bool:
    """True when a tag was added."""
    if not tags:
        return False
    result = await session.execute(
        pg_insert(CustomerTag)
        .values([{"customer_id": customer_id, "tag": t} for t in tags])
        .on_conflict_do_nothing()
        .returning(CustomerTag.tag)
    )
    return bool(result.all())


async def remove_tags(
    session: AsyncSession, *, customer_id: uuid.UUID, tags: Sequence[str]
) -> bool:
    result = await session.execute(
        delete(CustomerTag)
        .where(CustomerTag.customer_id == customer_id, CustomerTag.tag.in_(list(tags)))
        .returning(CustomerTag.tag)
    )
    return bool(result.all())


async def set_tags(session: AsyncSession, *, customer_id: uuid.UUID, tags: Sequence[str]) -> bool:
    """Replaces the file's tags; True when anything changed."""
    current = set(await tags_of(session, customer_id))
    wanted = set(tags)
    removed = await remove_tags(session, customer_id=customer_id, tags=sorted(current - wanted))
    added = await add_tags(session, customer_id=customer_id, tags=sorted(wanted - current))
    return removed or added


_TAG_CLOUD = text(
    "SELECT t.tag, count(*) AS n FROM customer_tags t JOIN customers c ON c.id = t.customer_id "
    "WHERE c.merged_into IS NULL GROUP BY t.tag ORDER BY n DESC, t.tag LIMIT :limit"
)


async def tag_cloud(session: AsyncSession, *, limit: int) -> list[tuple[str, int]]:
    return [(r.tag, r.n) for r in (await session.execute(_TAG_CLOUD, {"limit": limit})).all()]


async def add_note(
    session: AsyncSession, *, customer_id: uuid.UUID, body: str, author: str
) -> CustomerNote:
    note = CustomerNote(customer_id=customer_id, body=body, author=author)
    session.add(note)
    await session.flush()
    return note


async def notes_of(session: AsyncSession, customer_id: uuid.UUID) -> list[CustomerNote]:
    rows = await session.scalars(
        select(CustomerNote)
        .where(CustomerNote.customer_id == customer_id)
        .order_by(CustomerNote.created_at.desc(), CustomerNote.id.desc())
    )
    return list(rows.all())


async def count_notes(session: AsyncSession, customer_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(CustomerNote)
            .where(CustomerNote.customer_id == customer_id)
        )
        or 0
    )

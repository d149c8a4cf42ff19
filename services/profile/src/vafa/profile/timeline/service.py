"""The interaction timeline: append-only entries, idempotent by source id, read newest first
with an opaque keyset cursor."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import exists, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.profile.models import Customer, TimelineEntry

log = structlog.get_logger(__name__)


class InvalidCursor(ValueError):
    pass


async def add_entry(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    kind: str,
    occurred_at: datetime,
    source: str,
    source_id: str,
    summary: str,
    data: dict[str, Any],
) -> int | None:
    """Adds the entry once per `source_id`: the new entry's id, or None when it exists."""
    result = await session.execute(
        pg_insert(TimelineEntry)
        .values(
            customer_id=customer_id,
            kind=kind,
            occurred_at=occurred_at,
            source=source,
            source_id=source_id,
            summary=summary,
            data=data,
        )
        .on_conflict_do_nothing(index_elements=[TimelineEntry.source_id])
        .returning(TimelineEntry.id)
    )
    return result.scalar_one_or_none()


async def has_entry(session: AsyncSession, *, source_id: str) -> bool:
    return bool(await session.scalar(select(exists().where(TimelineEntry.source_id == source_id))))


def encode_cursor(entry: TimelineEntry) -> str:
    raw = json.dumps([entry.occurred_at.isoformat(), entry.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, entry_id = json.loads(raw)
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(entry_id, int):
            raise ValueError("malformed")
        return when, entry_id
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor("the cursor is not one this API issued") from exc


async def list_entries(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    limit: int,
    cursor: str | None = None,
    kinds: list[str] | None = None,
) -> tuple[list[TimelineEntry], str | None]:
    """A page of a customer's entries, newest first, and the cursor of the next page (None on
    the last). Raises InvalidCursor for a cursor this function did not issue."""
    query = select(TimelineEntry).where(TimelineEntry.customer_id == customer_id)
    if cursor:
        at, entry_id = decode_cursor(cursor)
        query = query.where(
            tuple_(TimelineEntry.occurred_at, TimelineEntry.id) < tuple_(at, entry_id)
        )
    if kinds:
        query = query.where(TimelineEntry.kind.in_(kinds))
    query = query.order_by(TimelineEntry.occurred_at.desc(), TimelineEntry.id.desc())
    rows = list((await session.scalars(query.limit(limit + 1))).all())
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None


async def record_points(
    session: AsyncSession,
    *,
    kind: str,
    customer_id: str,
    points: int,
    balance: int,
    reason: str,
    order_ref: str,
    entry_id: str,
    occurred_at: datetime,
    source_id: str,
) -> int | None:
    """A loyalty points movement on the customer's timeline. A customer this service does not
    know (or a malformed id) is skipped quietly: loyalty only learns ids from us."""
    try:
        cid = uuid.UUID(customer_id)
    except ValueError:
        log.info("points_for_unknown_customer_skipped", customer_id=customer_id)
        return None
    if await session.get(Customer, cid) is None:
        log.info("points_for_unknown_customer_skipped", customer_id=customer_id)
        return None
    earned = kind == "points.earned"
    what = f"Earned {points} points" if earned else f"{points} points reversed"
    because = f" ({reason}" + (f", order {order_ref}" if order_ref else "") + ")" if reason else ""
    return await add_entry(
        session,
        customer_id=cid,
        kind=kind,
        occurred_at=occurred_at,
        source="loyalty",
        source_id=source_id,
        summary=f"{what}{because}; balance {balance}.",
        data={
            "points": points,
            "balance": balance,
            "reason": reason,
            "order_ref": order_ref or None,
            "entry_id": entry_id or None,
        },
    )

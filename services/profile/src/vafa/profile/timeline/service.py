"""The interaction timeline: append-only entries, idempotent by source id, read newest first
with an opaque keyset cursor."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import exists, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit import cloudevents
from vafa.kit.outbox import OutboxEvent
from vafa.profile.events import CUSTOMERS_TOPIC, outbox
from vafa.profile.models import TimelineEntry

log = structlog.get_logger(__name__)


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A timeline entry to add (see `add_entries`)."""

    customer_id: uuid.UUID
    kind: str
    occurred_at: datetime
    source: str
    source_id: str
    summary: str
    data: dict[str, Any]


# One statement, whatever the number of entries: the columns travel as arrays, so the SQL text
# (and the server's prepared statement) never changes. Other modules may run it as the last part
# of a statement of theirs (with `entry_params`).
ADD_ENTRIES_SQL = (
    "INSERT INTO timeline_entries "
    "(customer_id, kind, occurred_at, source, source_id, summary, data) "
    "SELECT c, k, o, s, i, m, CAST(d AS jsonb) FROM unnest("
    "CAST(:entry_customer_ids AS uuid[]), CAST(:entry_kinds AS text[]), "
    "CAST(:entry_occurred AS timestamptz[]), CAST(:entry_sources AS text[]), "
    "CAST(:entry_source_ids AS text[]), CAST(:entry_summaries AS text[]), "
    "CAST(:entry_data AS text[])) WITH ORDINALITY AS t(c, k, o, s, i, m, d, n) "
    "ORDER BY n "
    "ON CONFLICT (source, source_id) DO NOTHING RETURNING source_id"
)
_ADD_ENTRIES = text(ADD_ENTRIES_SQL)

# Known ids, each with the file it lives on now (itself, or the survivor of its merges).
_KNOWN_CUSTOMERS = text(
    "WITH RECURSIVE chain(start, id, merged_into, depth) AS ("
    " SELECT id, id, merged_into, 0 FROM customers WHERE id = ANY(CAST(:ids AS uuid[]))"
    " UNION ALL SELECT ch.start, c.id, c.merged_into, ch.depth + 1 FROM chain ch"
    " JOIN customers c ON c.id = ch.merged_into WHERE ch.depth < 50"
    ") SELECT start, id FROM chain WHERE merged_into IS NULL"
)


def entry_params(entries: Sequence[NewEntry]) -> dict[str, list[Any]]:
    """The bind parameters of ADD_ENTRIES_SQL."""
    return {
        "entry_customer_ids": [e.customer_id for e in entries],
        "entry_kinds": [e.kind for e in entries],
        "entry_occurred": [e.occurred_at for e in entries],
        "entry_sources": [e.source for e in entries],
        "entry_source_ids": [e.source_id for e in entries],
        "entry_summaries": [e.summary for e in entries],
        "entry_data": [json.dumps(e.data) for e in entries],
    }


async def add_entries(session: AsyncSession, entries: Sequence[NewEntry]) -> set[str]:
    """Adds the entries in one statement, in order, each once per `source_id`; returns the
    source ids of the entries added (an entry whose source id exists is left out)."""
    if not entries:
        return set()
    result = await session.execute(_ADD_ENTRIES, entry_params(entries))
    return set(result.scalars())


async def known_customers(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """Which of these customer ids exist, each with the file it lives on now (a merged id
    maps to its survivor), in one statement."""
    if not ids:
        return {}
    rows = await session.execute(_KNOWN_CUSTOMERS, {"ids": list(ids)})
    return {start: cid for start, cid in rows.all()}


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
        .on_conflict_do_nothing(index_elements=[TimelineEntry.source, TimelineEntry.source_id])
        .returning(TimelineEntry.id)
    )
    return result.scalar_one_or_none()


async def record_interaction(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    kind: str,
    source: str,
    source_id: str,
    occurred_at: datetime,
    direction: str | None = None,
    duration_seconds: int | None = None,
    agent: str | None = None,
    summary: str | None = None,
    attributes: dict[str, str] | None = None,
) -> tuple[TimelineEntry, bool]:
    """Records an integration's touchpoint once per (source, source_id): (the entry, created?).
    A new entry publishes InteractionRecorded (loyalty awards interaction points from it).
    Raises EntryElsewhere when that (source, source_id) is on another customer's timeline."""
    attributes = attributes or {}
    what = kind.replace("_", " ")
    if direction:
        what = f"{direction} {what}"
    if duration_seconds is not None:
        what += f", {duration_seconds // 60}:{duration_seconds % 60:02d}"
    if agent:
        what += f", agent {agent}"
    result = await session.execute(
        pg_insert(TimelineEntry)
        .values(
            customer_id=customer_id,
            kind=kind,
            occurred_at=occurred_at,
            source=source,
            source_id=source_id,
            summary=summary or what[:1].upper() + what[1:] + ".",
            direction=direction,
            duration_seconds=duration_seconds,
            agent=agent,
            data={"attributes": attributes},
        )
        .on_conflict_do_nothing(index_elements=[TimelineEntry.source, TimelineEntry.source_id])
        .returning(TimelineEntry.id)
    )
    new_id = result.scalar_one_or_none()
    entry = await session.scalar(
        select(TimelineEntry).where(
            TimelineEntry.source == source, TimelineEntry.source_id == source_id
        )
    )
    assert entry is not None
    if entry.customer_id != customer_id:
        raise EntryElsewhere(entry.customer_id)
    if new_id is None:
        return entry, False
    message = profile_pb2.InteractionRecorded(
        customer_id=str(customer_id),
        entry_id=str(entry.id),
        kind=kind,
        direction=direction or "",
        source=source,
        source_id=source_id,
        attributes=attributes,
    )
    message.occurred_at.FromDatetime(occurred_at)
    await outbox.add_many(
        session,
        [
            OutboxEvent(
                CUSTOMERS_TOPIC,
                str(customer_id),
                message,
                event_id=cloudevents.deterministic_id("profile", "interaction", source, source_id),
            )
        ],
    )
    return entry, True


class EntryElsewhere(ValueError):
    def __init__(self, customer_id: uuid.UUID) -> None:
        super().__init__("this source id is on another customer's timeline")
        self.customer_id = customer_id


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
    since: datetime | None = None,
    until: datetime | None = None,
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
    if since is not None:
        query = query.where(TimelineEntry.occurred_at >= since)
    if until is not None:
        query = query.where(TimelineEntry.occurred_at < until)
    query = query.order_by(TimelineEntry.occurred_at.desc(), TimelineEntry.id.desc())
    rows = list((await session.scalars(query.limit(limit + 1))).all())
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None


@dataclass(frozen=True, slots=True)
class PointsMovement:
    """A loyalty points event, as `record_points` and `record_points_many` take it."""

    kind: str  # "points.earned" or "points.reversed"
    customer_id: str
    points: int
    balance: int
    reason: str
    order_ref: str
    entry_id: str
    occurred_at: datetime
    source_id: str


def _customer_uuid(customer_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(customer_id)
    except ValueError:
        return None


def points_entry(movement: PointsMovement, customer_id: uuid.UUID) -> NewEntry:
    m = movement
    what = (
        f"Earned {m.points} points" if m.kind == "points.earned" else f"{m.points} points reversed"
    )
    because = (
        f" ({m.reason}" + (f", order {m.order_ref}" if m.order_ref else "") + ")"
        if m.reason
        else ""
    )
    return NewEntry(
        customer_id=customer_id,
        kind=m.kind,
        occurred_at=m.occurred_at,
        source="loyalty",
        source_id=m.source_id,
        summary=f"{what}{because}; balance {m.balance}.",
        data={
            "points": m.points,
            "balance": m.balance,
            "reason": m.reason,
            "order_ref": m.order_ref or None,
            "entry_id": m.entry_id or None,
        },
    )


async def record_points_many(
    session: AsyncSession, movements: Sequence[PointsMovement]
) -> set[str]:
    """Loyalty points movements on their customers' timelines, in two statements (which
    customers exist; one insert). A customer this service does not know (or a malformed id) is
    skipped quietly: loyalty only learns ids from us. Returns the source ids added."""
    parsed = [(m, _customer_uuid(m.customer_id)) for m in movements]
    known = await known_customers(session, list({cid for _, cid in parsed if cid is not None}))
    entries = []
    for m, cid in parsed:
        if cid is None or cid not in known:
            log.info("points_for_unknown_customer_skipped", customer_id=m.customer_id)
            continue
        # Loyalty may still speak of a merged id: the entry goes on the survivor's timeline.
        entries.append(points_entry(m, known[cid]))
    return await add_entries(session, entries)


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
    """One loyalty points movement on the customer's timeline (the rules of
    `record_points_many`): the new entry's id, or None when skipped or already there."""
    movement = PointsMovement(
        kind=kind,
        customer_id=customer_id,
        points=points,
        balance=balance,
        reason=reason,
        order_ref=order_ref,
        entry_id=entry_id,
        occurred_at=occurred_at,
        source_id=source_id,
    )
    cid = _customer_uuid(customer_id)
    known = await known_customers(session, [cid]) if cid is not None else {}
    if cid is None or cid not in known:
        log.info("points_for_unknown_customer_skipped", customer_id=customer_id)
        return None
    e = points_entry(movement, known[cid])
    return await add_entry(
        session,
        customer_id=e.customer_id,
        kind=e.kind,
        occurred_at=e.occurred_at,
        source=e.source,
        source_id=e.source_id,
        summary=e.summary,
        data=e.data,
    )

"""Evaluation of segments: the one seam the feature store and the scores call into.

Memberships change only through statements whose RETURNING says what really changed: a new
stay is an INSERT ... ON CONFLICT (uq_memberships_open) DO NOTHING, an exit an UPDATE ... WHERE
exited_at IS NULL. So a replayed event, or two transactions evaluating one customer at once,
open one membership and emit one SegmentEntered: the second waits on the unique index or the
row lock and then finds nothing left to change. Event ids come from the membership row, so a
retried transaction never emits twice either.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, and_, bindparam, exists, func, literal, select, text, union_all, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import segmentation_pb2 as pb
from vafa.kit.cloudevents import deterministic_id, timestamp
from vafa.kit.outbox import OutboxEvent
from vafa.segmentation.config import Settings
from vafa.segmentation.events import outbox
from vafa.segmentation.models import Membership, Recheck, Segment
from vafa.segmentation.segments import compiler
from vafa.segmentation.segments import language as L

TOPIC = "segmentation.memberships.v1"
M = Membership.__table__
F = compiler.F
R = Recheck.__table__

CAUSES = {
    "event": pb.MEMBERSHIP_CAUSE_EVENT,
    "window": pb.MEMBERSHIP_CAUSE_WINDOW,
    "evaluation": pb.MEMBERSHIP_CAUSE_EVALUATION,
    "upload": pb.MEMBERSHIP_CAUSE_UPLOAD,
    "removed": pb.MEMBERSHIP_CAUSE_REMOVED,
}
# Events per outbox round trip on a full evaluation.
_EVENT_CHUNK = 5000


def _uuids(values: Sequence[uuid.UUID]) -> Any:
    """One array parameter, however many ids (a parameter each would hit the driver's limit)."""
    return literal(list(values), ARRAY(Uuid))


@functools.cache
def shop_timezone() -> str:
    return Settings().timezone


@dataclass(frozen=True, slots=True)
class SegmentRow:
    id: uuid.UUID
    key: str
    name: str
    kind: str
    version: int
    archived: bool
    definition: dict[str, Any] | None

    @property
    def info(self) -> L.SegmentInfo:
        return L.SegmentInfo(
            self.id, self.key, self.kind, self.version, self.archived, self.definition
        )


async def active_segments(
    session: AsyncSession, *, archived: bool = False
) -> dict[str, SegmentRow]:
    """Every segment that is not archived (with `archived`: every segment), by key."""
    stmt = select(
        Segment.id,
        Segment.key,
        Segment.name,
        Segment.kind,
        Segment.version,
        Segment.archived,
        Segment.definition,
    )
    if not archived:
        stmt = stmt.where(Segment.archived.is_(False))
    return {r.key: SegmentRow(*r) for r in await session.execute(stmt)}


def infos(segments: Mapping[str, SegmentRow]) -> dict[str, L.SegmentInfo]:
    return {k: s.info for k, s in segments.items()}


def closure(key: str, segments: Mapping[str, SegmentRow]) -> list[str]:
    """`key` and every dynamic segment its definition reaches through references."""
    seen: list[str] = []
    todo = [key]
    while todo:
        k = todo.pop()
        if k in seen or k not in segments:
            continue
        seen.append(k)
        d = segments[k].definition
        if segments[k].kind == "dynamic" and d is not None:
            todo.extend(L.refs(d))
    return seen


# Compiled definitions by (segment, version, versions of the segments it inlines): a change to
# a referenced segment's definition changes the key.
_CACHE: dict[tuple[Any, ...], compiler.Compiled] = {}
_CACHE_MAX = 2048


def compiled(segment: SegmentRow, segments: Mapping[str, SegmentRow]) -> compiler.Compiled:
    key = tuple(
        (segments[k].id, segments[k].version, segments[k].kind)
        for k in closure(segment.key, segments)
    ) or ((segment.id, segment.version, segment.kind),)
    hit = _CACHE.get(key)
    if hit is None:
        assert segment.definition is not None
        hit = compiler.compile_definition(
            L.load(segment.definition), compiler.resolver(infos(segments))
        )
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = hit
    return hit


def entered_event(
    seg: SegmentRow,
    customer_id: uuid.UUID,
    membership_id: int,
    version: int,
    cause: str,
    at: datetime,
) -> OutboxEvent:
    msg = pb.SegmentEntered(
        customer_id=str(customer_id),
        segment_id=str(seg.id),
        segment_key=seg.key,
        segment_name=seg.name,
        segment_version=version,
        cause=CAUSES[cause],
        occurred_at=timestamp(at),
    )
    return OutboxEvent(
        TOPIC,
        str(customer_id),
        msg,
        event_id=deterministic_id("segment-entered", str(membership_id)),
        time=at,
    )


def exited_event(
    seg: SegmentRow,
    customer_id: uuid.UUID,
    membership_id: int,
    version: int,
    entered_at: datetime,
    cause: str,
    at: datetime,
) -> OutboxEvent:
    msg = pb.SegmentExited(
        customer_id=str(customer_id),
        segment_id=str(seg.id),
        segment_key=seg.key,
        segment_name=seg.name,
        segment_version=version,
        cause=CAUSES[cause],
        occurred_at=timestamp(at),
        entered_at=timestamp(entered_at),
    )
    return OutboxEvent(
        TOPIC,
        str(customer_id),
        msg,
        event_id=deterministic_id("segment-exited", str(membership_id)),
        time=at,
    )


async def emit(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    for i in range(0, len(events), _EVENT_CHUNK):
        await outbox.add_many(session, events[i : i + _EVENT_CHUNK])


_OPEN = text(
    "INSERT INTO memberships (segment_id, customer_id, segment_version, entered_at, entered_cause) "
    "SELECT x.segment_id, x.customer_id, x.version, :now, :cause "
    "FROM unnest(CAST(:segments AS uuid[]), CAST(:customers AS uuid[]), CAST(:versions AS int[])) "
    "AS x(segment_id, customer_id, version) "
    "ON CONFLICT (segment_id, customer_id) WHERE exited_at IS NULL DO NOTHING "
    "RETURNING id, segment_id, customer_id, segment_version"
)
_CLOSE = text(
    "UPDATE memberships m SET exited_at = :now, exited_cause = :cause "
    "FROM unnest(CAST(:segments AS uuid[]), CAST(:customers AS uuid[])) "
    "AS x(segment_id, customer_id) "
    "WHERE m.segment_id = x.segment_id AND m.customer_id = x.customer_id "
    "AND m.exited_at IS NULL "
    "RETURNING m.id, m.segment_id, m.customer_id, m.segment_version, m.entered_at"
)
# Locks the segment rows in id order first, so concurrent transactions never deadlock on them.
_COUNT = text(
    "WITH d AS (SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:deltas AS bigint[])) "
    "AS x(id, delta)), "
    "locked AS (SELECT s.id FROM segments s JOIN d ON d.id = s.id ORDER BY s.id FOR UPDATE) "
    "UPDATE segments s SET member_count = s.member_count + d.delta "
    "FROM d, locked WHERE s.id = d.id AND locked.id = d.id"
)


async def apply_changes(
    session: AsyncSession,
    *,
    segments_by_id: Mapping[uuid.UUID, SegmentRow],
    enter: Sequence[tuple[uuid.UUID, uuid.UUID]],
    leave: Sequence[tuple[uuid.UUID, uuid.UUID]],
    now: datetime,
    cause: str,
    exit_cause: str | None = None,
) -> tuple[int, int]:
    """Opens (segment, customer) stays in `enter`, closes those in `leave`; emits an event for
    each change that really happened; keeps member_count. Returns (entered, exited)."""
    events: list[OutboxEvent] = []
    deltas: dict[uuid.UUID, int] = {}
    if enter:
        rows = await session.execute(
            _OPEN,
            {
                "segments": [s for s, _ in enter],
                "customers": [c for _, c in enter],
                "versions": [segments_by_id[s].version for s, _ in enter],
                "now": now,
                "cause": cause,
            },
        )
        for r in rows:
            seg = segments_by_id[r.segment_id]
            events.append(entered_event(seg, r.customer_id, r.id, r.segment_version, cause, now))
            deltas[seg.id] = deltas.get(seg.id, 0) + 1
    entered = len(events)
    if leave:
        ec = exit_cause or cause
        rows = await session.execute(
            _CLOSE,
            {
                "segments": [s for s, _ in leave],
                "customers": [c for _, c in leave],
                "now": now,
                "cause": ec,
            },
        )
        for r in rows:
            seg = segments_by_id[r.segment_id]
            events.append(
                exited_event(seg, r.customer_id, r.id, r.segment_version, r.entered_at, ec, now)
            )
            deltas[seg.id] = deltas.get(seg.id, 0) - 1
    changed = {k: v for k, v in sorted(deltas.items()) if v}
    if changed:
        await session.execute(_COUNT, {"ids": list(changed), "deltas": list(changed.values())})
    await emit(session, events)
    return entered, len(events) - entered


# The per-customer statement of a set of segment versions. Reusing the same statement object
# spares SQLAlchemy rebuilding it and recomputing its cache key on every event.
_PER_CUSTOMER: dict[tuple[Any, ...], Any] = {}


def _per_customer(dynamic: Sequence[SegmentRow], segments: Mapping[str, SegmentRow]) -> Any:
    """One statement for the customers in the `ids` parameter: a column per segment, the next
    recheck, the open memberships."""
    key = tuple(sorted((s.id, s.version, s.kind) for s in segments.values()))
    stmt = _PER_CUSTOMER.get(key)
    if stmt is not None:
        return stmt
    comps = [compiled(s, segments) for s in dynamic]
    rechecks = [c.recheck for c in comps if c.recheck is not None]
    due = func.least(*rechecks) if len(rechecks) > 1 else rechecks[0] if rechecks else literal(None)
    open_now = (
        select(func.array_agg(M.c.segment_id))
        .where(
            M.c.customer_id == F.c.customer_id,
            M.c.exited_at.is_(None),
            M.c.segment_id.in_([s.id for s in dynamic]),
        )
        .scalar_subquery()
    )
    stmt = select(
        F.c.customer_id,
        F.c.removed,
        due.label("due"),
        open_now.label("open"),
        *(c.match.label(f"s{i}") for i, c in enumerate(comps)),
    ).where(F.c.customer_id == func.any(bindparam("ids", type_=ARRAY(Uuid))))
    if len(_PER_CUSTOMER) >= 64:
        _PER_CUSTOMER.clear()
    _PER_CUSTOMER[key] = stmt
    return stmt


_RECHECK_SET = text(
    "INSERT INTO rechecks (customer_id, due_at) "
    "SELECT * FROM unnest(CAST(:customers AS uuid[]), CAST(:dues AS timestamptz[])) "
    "ON CONFLICT (customer_id) DO UPDATE SET due_at = excluded.due_at"
)
_RECHECK_CLEAR = text("DELETE FROM rechecks WHERE customer_id = ANY(CAST(:customers AS uuid[]))")


async def reevaluate_customers(
    session: AsyncSession,
    *,
    customer_ids: Collection[uuid.UUID],
    now: datetime,
    cause: str,
) -> None:
    """Re-evaluates every active dynamic segment for these customers only, in the caller's
    transaction: opens/closes memberships, adds SegmentEntered/SegmentExited to the outbox, and
    refreshes their `rechecks` row. `cause` is "event" or "window"."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    segments = await active_segments(session)
    dynamic = sorted((s for s in segments.values() if s.kind == "dynamic"), key=lambda s: s.id)
    wanted: set[tuple[uuid.UUID, uuid.UUID]] = set()
    dues: dict[uuid.UUID, datetime] = {}
    removed: set[uuid.UUID] = set()
    current: set[tuple[uuid.UUID, uuid.UUID]] = set()
    dynamic_ids = [s.id for s in dynamic]
    found: set[uuid.UUID] = set()
    if dynamic:
        stmt = _per_customer(dynamic, segments)
        p = {**compiler.params(now, shop_timezone()), "ids": ids}
        for row in await session.execute(stmt, p):
            found.add(row.customer_id)
            current.update((s, row.customer_id) for s in row.open or ())
            if row.removed:
                removed.add(row.customer_id)
            for i, seg in enumerate(dynamic):
                if row[i + 4]:
                    wanted.add((seg.id, row.customer_id))
            if row.due is not None:
                dues[row.customer_id] = row.due
    unknown = [c for c in ids if c not in found]
    if dynamic_ids and unknown:
        # Not in the feature store (never, or no longer): whatever they are in, they leave.
        rows = await session.execute(
            select(M.c.segment_id, M.c.customer_id).where(
                M.c.customer_id == func.any(_uuids(unknown)),
                M.c.exited_at.is_(None),
                M.c.segment_id.in_(dynamic_ids),
            )
        )
        current.update((r.segment_id, r.customer_id) for r in rows)
    by_id = {s.id: s for s in dynamic}
    leave = sorted(current - wanted)
    await apply_changes(
        session,
        segments_by_id=by_id,
        enter=sorted(wanted - current),
        leave=[p for p in leave if p[1] not in removed],
        now=now,
        cause=cause,
    )
    if gone := [p for p in leave if p[1] in removed]:
        # Merged into another customer or erased: they leave every segment, cause removed.
        await apply_changes(
            session, segments_by_id=by_id, enter=[], leave=gone, now=now, cause="removed"
        )
    if dues:
        await session.execute(_RECHECK_SET, {"customers": list(dues), "dues": list(dues.values())})
    if cleared := [c for c in ids if c not in dues]:
        await session.execute(_RECHECK_CLEAR, {"customers": cleared})


def uses_fields(
    segment: SegmentRow, segments: Mapping[str, SegmentRow], fields: Collection[str]
) -> bool:
    wanted = set(fields)
    for k in closure(segment.key, segments):
        d = segments[k].definition
        if d is not None and wanted.intersection(L.fields_used(d)):
            return True
    return False


def dependents(key: str, segments: Mapping[str, SegmentRow]) -> list[SegmentRow]:
    """Active dynamic segments whose definition reaches `key` (not `key` itself)."""
    return [
        s
        for s in segments.values()
        if s.key != key and s.kind == "dynamic" and key in closure(s.key, segments)
    ]


async def evaluate_segments(
    session: AsyncSession,
    *,
    now: datetime,
    cause: str,
    segment_ids: Collection[uuid.UUID] | None = None,
    fields: Collection[str] | None = None,
) -> None:
    """Full evaluation, in the caller's transaction, of the given active dynamic segments, or of
    those whose definition tests any of `fields` (feature names, e.g. {"rfm_segment"}), or of
    all when both are None. `cause` is "evaluation". The definitions have not changed, so the
    customers' rechecks (kept exact as their features change) are left as they are; a new or
    changed definition computes its own when it is saved."""
    segments = await active_segments(session)
    chosen = [s for s in segments.values() if s.kind == "dynamic"]
    if segment_ids is not None:
        wanted = set(segment_ids)
        chosen = [s for s in chosen if s.id in wanted]
    elif fields is not None:
        chosen = [s for s in chosen if uses_fields(s, segments, fields)]
    for seg in sorted(chosen, key=lambda s: s.id):
        await evaluate_one(
            session, segment=seg, segments=segments, now=now, cause=cause, rechecks=False
        )


async def evaluate_one(
    session: AsyncSession,
    *,
    segment: SegmentRow,
    segments: Mapping[str, SegmentRow],
    now: datetime,
    cause: str,
    rechecks: bool = True,
) -> tuple[int, int]:
    """Set-based: whoever matches and has no open stay enters, whoever has one and no longer
    matches exits. Returns (entered, exited). `rechecks`: also bring forward the customers'
    rechecks for this definition — needed when it is new or changed; otherwise every
    customer's row is kept exact by reevaluate_customers as their features change."""
    comp = compiled(segment, segments)
    p = compiler.params(now, shop_timezone())
    # These scans are short and many-branched: JIT compiling them costs more than it saves.
    await session.execute(text("SET LOCAL jit = off"))
    # One statement, one scan of the feature store: who matches, the entries (only those
    # without an open stay are tried; ON CONFLICT still settles races) and the exits.
    matched = select(F.c.customer_id).where(comp.match).cte("matched")
    member = M.alias("open_m")
    not_yet = ~exists(
        select(literal(1))
        .select_from(member)
        .where(
            member.c.segment_id == segment.id,
            member.c.customer_id == matched.c.customer_id,
            member.c.exited_at.is_(None),
        )
    )
    opened = (
        insert(M)
        .from_select(
            ["segment_id", "customer_id", "segment_version", "entered_at", "entered_cause"],
            select(
                literal(segment.id, M.c.segment_id.type),
                matched.c.customer_id,
                literal(segment.version),
                compiler.NOW,
                literal(cause),
            ).where(not_yet),
        )
        .on_conflict_do_nothing(
            index_elements=[M.c.segment_id, M.c.customer_id], index_where=M.c.exited_at.is_(None)
        )
        .returning(M.c.id, M.c.customer_id, M.c.segment_version, M.c.entered_at)
        .cte("opened")
    )
    closed = (
        update(M)
        .where(
            M.c.segment_id == segment.id,
            M.c.exited_at.is_(None),
            M.c.customer_id.not_in(select(matched.c.customer_id)),
        )
        .values(exited_at=compiler.NOW, exited_cause=cause)
        .returning(M.c.id, M.c.customer_id, M.c.segment_version, M.c.entered_at)
        .cte("closed")
    )
    changes = union_all(
        select(literal(True).label("entered"), *opened.c),
        select(literal(False).label("entered"), *closed.c),
    )
    events: list[OutboxEvent] = []
    exits: list[OutboxEvent] = []
    for r in await session.execute(changes, p):
        if r.entered:
            events.append(
                entered_event(segment, r.customer_id, r.id, r.segment_version, cause, now)
            )
        else:
            exits.append(
                exited_event(
                    segment, r.customer_id, r.id, r.segment_version, r.entered_at, cause, now
                )
            )
    entered = len(events)
    events += exits
    await emit(session, events)
    await _recount(session, segment.id, now)
    candidates = comp.all_rechecks() if rechecks else None
    if candidates is not None:
        # Earlier is harmless (the customer is re-evaluated and the row recomputed exactly), so
        # only rows that bring a recheck forward are written.
        c = candidates.subquery("c")
        sooner = select(c.c.customer_id, c.c.due)
        due = insert(R).from_select(["customer_id", "due_at"], sooner)
        due = due.on_conflict_do_update(
            index_elements=[R.c.customer_id],
            set_={"due_at": due.excluded.due_at},
            where=due.excluded.due_at < R.c.due_at,
        )
        await session.execute(due, p)
    return entered, len(events) - entered


async def _recount(session: AsyncSession, segment_id: uuid.UUID, now: datetime) -> None:
    count = (
        select(func.count())
        .select_from(M)
        .where(and_(M.c.segment_id == segment_id, M.c.exited_at.is_(None)))
        .scalar_subquery()
    )
    await session.execute(
        update(Segment).where(Segment.id == segment_id).values(member_count=count, evaluated_at=now)
    )

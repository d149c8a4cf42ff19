"""Segments: definitions and their versions, memberships, preview, explanation, static lists.

Every write is one transaction of the caller's: the segment row, its version, the memberships
it opens or closes and their events commit together or not at all.
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, Uuid, func, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import segmentation_pb2 as pb
from vafa.kit import identity
from vafa.kit.cloudevents import timestamp
from vafa.kit.errors import Conflict, NotFound, Problem
from vafa.segmentation.events import outbox
from vafa.segmentation.models import Features, Identity, Membership, Segment, SegmentVersion
from vafa.segmentation.segments import compiler, evaluation
from vafa.segmentation.segments import language as L
from vafa.segmentation.segments.evaluation import SegmentRow

M = Membership.__table__
F = compiler.F

# --- segments -------------------------------------------------------------------------------


def _row(seg: Segment) -> SegmentRow:
    return SegmentRow(
        seg.id, seg.key, seg.name, seg.kind, seg.version, seg.archived, seg.definition
    )


async def get_segment(
    session: AsyncSession, *, segment_id: uuid.UUID, lock: bool = False
) -> Segment:
    stmt = select(Segment).where(Segment.id == segment_id).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update()
    seg = await session.scalar(stmt)
    if seg is None:
        raise NotFound(f"No segment {segment_id}.", segment_id=str(segment_id))
    return seg


async def list_segments(session: AsyncSession, *, archived: bool = False) -> list[Segment]:
    stmt = select(Segment).order_by(Segment.created_at, Segment.key)
    if not archived:
        stmt = stmt.where(Segment.archived.is_(False))
    return list(await session.scalars(stmt))


async def _published(session: AsyncSession, seg: Segment, now: datetime) -> None:
    await outbox.add(
        session,
        topic=evaluation.TOPIC,
        key=str(seg.id),
        message=pb.SegmentPublished(
            segment_id=str(seg.id),
            segment_key=seg.key,
            segment_name=seg.name,
            segment_version=seg.version,
            kind=seg.kind,
            archived=seg.archived,
            member_count=seg.member_count,
            occurred_at=timestamp(now),
        ),
        time=now,
    )


async def validate(
    session: AsyncSession,
    raw: Any,
    *,
    self_key: str | None,
    pointer: str = "/body/definition",
) -> Any:
    """The typed tree of a valid definition, or DefinitionError (422) with pointers. Archived
    segments are looked up too, so a reference to one says so."""
    segments = await evaluation.active_segments(session, archived=True)
    return L.parse(raw, segments=evaluation.infos(segments), self_key=self_key, pointer=pointer)


async def create_segment(
    session: AsyncSession,
    *,
    key: str,
    name: str,
    description: str,
    kind: str,
    definition: Any,
    template: str | None,
    author: str,
    now: datetime,
    pointer: str = "/body/definition",
) -> Segment:
    """A dynamic segment is evaluated at once; a static one starts empty."""
    segments = await evaluation.active_segments(session)
    if await session.scalar(select(Segment.id).where(Segment.key == key)) is not None:
        raise Conflict(f"A segment with the key {key!r} exists.", key=key)
    canonical = None
    if kind == "dynamic":
        canonical = L.dump(await validate(session, definition, self_key=key, pointer=pointer))
    seg = Segment(
        id=uuid.uuid4(),
        key=key,
        name=name,
        description=description,
        kind=kind,
        definition=canonical,
        version=1,
        template=template,
        created_by=author,
        created_at=now,
        updated_at=now,
    )
    session.add(seg)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(f"A segment with the key {key!r} exists.", key=key) from None
    session.add(SegmentVersion(segment_id=seg.id, version=1, definition=canonical, author=author))
    await session.flush()
    if kind == "dynamic":
        await evaluation.evaluate_one(
            session,
            segment=_row(seg),
            segments={**segments, key: _row(seg)},
            now=now,
            cause="evaluation",
        )
    seg = await get_segment(session, segment_id=seg.id)
    await _published(session, seg, now)
    return seg


async def update_segment(
    session: AsyncSession,
    *,
    segment_id: uuid.UUID,
    name: str | None,
    description: str | None,
    definition: Any | None,
    author: str,
    now: datetime,
) -> Segment:
    """A definition change is a new version and a full re-evaluation of the segment and of
    every segment that refers to it."""
    seg = await get_segment(session, segment_id=segment_id, lock=True)
    if seg.archived:
        raise Conflict(f"Segment {seg.key!r} is archived.", segment_id=str(seg.id))
    if name is not None:
        seg.name = name
    if description is not None:
        seg.description = description
    changed = False
    if definition is not None:
        if seg.kind != "dynamic":
            raise Problem(
                422,
                "/body/definition: a static segment has no definition (upload its members)",
                title="Your request is not valid",
                type="validation",
                errors=[
                    {"pointer": "/body/definition", "detail": "a static segment has no definition"}
                ],
            )
        canonical = L.dump(await validate(session, definition, self_key=seg.key))
        if canonical != seg.definition:
            seg.version += 1
            seg.definition = canonical
            session.add(
                SegmentVersion(
                    segment_id=seg.id, version=seg.version, definition=canonical, author=author
                )
            )
            changed = True
    seg.updated_at = now
    await session.flush()
    if changed:
        segments = await evaluation.active_segments(session)
        for s in [segments[seg.key], *evaluation.dependents(seg.key, segments)]:
            await evaluation.evaluate_one(
                session, segment=s, segments=segments, now=now, cause="evaluation"
            )
    seg = await get_segment(session, segment_id=segment_id)
    await _published(session, seg, now)
    return seg


async def archive_segment(
    session: AsyncSession, *, segment_id: uuid.UUID, now: datetime
) -> Segment:
    """Every member exits (cause removed). Refused while another active segment refers to it."""
    seg = await get_segment(session, segment_id=segment_id, lock=True)
    if seg.archived:
        return seg
    segments = await evaluation.active_segments(session)
    users = sorted(
        s.key
        for s in segments.values()
        if s.key != seg.key and s.definition is not None and seg.key in set(L.refs(s.definition))
    )
    if users:
        raise Conflict(
            f"Segment {seg.key!r} is used by {', '.join(users)}; change those first.",
            referenced_by=users,
        )
    open_ = [
        (seg.id, c)
        for c in await session.scalars(
            select(M.c.customer_id).where(M.c.segment_id == seg.id, M.c.exited_at.is_(None))
        )
    ]
    await evaluation.apply_changes(
        session,
        segments_by_id={seg.id: _row(seg)},
        enter=[],
        leave=open_,
        now=now,
        cause="removed",
    )
    seg = await get_segment(session, segment_id=segment_id)
    seg.archived = True
    seg.updated_at = now
    await session.flush()
    await _published(session, seg, now)
    return seg


async def evaluate(
    session: AsyncSession, *, segment_id: uuid.UUID, now: datetime
) -> tuple[Segment, int, int]:
    seg = await get_segment(session, segment_id=segment_id, lock=True)
    if seg.archived or seg.kind != "dynamic":
        raise Conflict(f"Segment {seg.key!r} is not an active dynamic segment.")
    segments = await evaluation.active_segments(session)
    entered, exited = await evaluation.evaluate_one(
        session, segment=segments[seg.key], segments=segments, now=now, cause="evaluation"
    )
    return await get_segment(session, segment_id=segment_id), entered, exited


async def versions(session: AsyncSession, *, segment_id: uuid.UUID) -> list[SegmentVersion]:
    return list(
        await session.scalars(
            select(SegmentVersion)
            .where(SegmentVersion.segment_id == segment_id)
            .order_by(SegmentVersion.version)
        )
    )


# --- preview --------------------------------------------------------------------------------


@dataclass(slots=True)
class Preview:
    count: int
    sample: list[uuid.UUID]


async def preview(
    session: AsyncSession, *, definition: Any, now: datetime, sample: int = 20
) -> Preview:
    """Who would match, without writing anything."""
    tree = await validate(session, definition, self_key=None)
    segments = await evaluation.active_segments(session)
    comp = compiler.compile_definition(tree, compiler.resolver(evaluation.infos(segments)))
    p = compiler.params(now, evaluation.shop_timezone())
    count = await session.scalar(select(func.count()).select_from(F).where(comp.match), p)
    ids = await session.scalars(
        select(F.c.customer_id).where(comp.match).order_by(F.c.customer_id).limit(sample), p
    )
    return Preview(int(count or 0), list(ids))


# --- members and history --------------------------------------------------------------------


def encode_cursor(*parts: Any) -> str:
    raw = "|".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise Problem(
            422,
            "The cursor is not one this API returned.",
            type="validation",
            errors=[{"pointer": "/query/cursor", "detail": "invalid cursor"}],
        ) from None
    return raw.split("|")


async def members(
    session: AsyncSession, *, segment_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[Membership], str | None]:
    """Current members, oldest stay first (entered_at, id), keyset-paged."""
    await get_segment(session, segment_id=segment_id)
    stmt = (
        select(Membership)
        .where(Membership.segment_id == segment_id, Membership.exited_at.is_(None))
        .order_by(Membership.entered_at, Membership.id)
        .limit(limit + 1)
    )
    if cursor:
        at, mid = decode_cursor(cursor)[:2]
        try:
            key = (datetime.fromisoformat(at), int(mid))
        except ValueError:
            raise Problem(
                422, "The cursor is not one this API returned.", type="validation"
            ) from None
        stmt = stmt.where(
            func.row(Membership.entered_at, Membership.id)
            > func.row(literal(key[0]), literal(key[1]))
        )
    rows = list(await session.scalars(stmt))
    nxt = (
        encode_cursor(rows[limit - 1].entered_at, rows[limit - 1].id) if len(rows) > limit else None
    )
    return rows[:limit], nxt


async def history(
    session: AsyncSession,
    *,
    segment_id: uuid.UUID,
    customer_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Membership], str | None]:
    """Every stay (entries, and exits when closed), newest first."""
    await get_segment(session, segment_id=segment_id)
    stmt = (
        select(Membership)
        .where(Membership.segment_id == segment_id)
        .order_by(Membership.id.desc())
        .limit(limit + 1)
    )
    if customer_id is not None:
        stmt = stmt.where(Membership.customer_id == customer_id)
    if cursor:
        try:
            before = int(decode_cursor(cursor)[0])
        except ValueError:
            raise Problem(
                422, "The cursor is not one this API returned.", type="validation"
            ) from None
        stmt = stmt.where(Membership.id < before)
    rows = list(await session.scalars(stmt))
    nxt = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt


async def customer_segments(
    session: AsyncSession, *, customer_id: uuid.UUID
) -> list[tuple[Membership, Segment]]:
    rows = await session.execute(
        select(Membership, Segment)
        .join(Segment, Segment.id == Membership.segment_id)
        .where(Membership.customer_id == customer_id)
        .order_by(Membership.exited_at.is_(None).desc(), Membership.entered_at.desc())
    )
    return [(m, s) for m, s in rows]


# --- explanation ----------------------------------------------------------------------------


@dataclass(slots=True)
class ExplainedNode:
    path: str
    kind: str
    condition: dict[str, Any]
    result: bool
    seen: Any
    children: list[ExplainedNode] = field(default_factory=list)


@dataclass(slots=True)
class Explanation:
    segment_id: uuid.UUID
    customer_id: uuid.UUID
    verdict: bool
    known: bool
    removed: bool
    member: bool
    member_since: datetime | None
    evaluated_at: datetime
    tree: ExplainedNode | None


def _own(node: Any, kind: str) -> dict[str, Any]:
    """The node's own JSON, children left to the tree."""
    out = L.dump(node)
    if kind in ("all", "any"):
        return {kind: f"{len(out[kind])} conditions"}
    if kind == "not":
        return {"not": "1 condition"}
    return out


async def explain(
    session: AsyncSession, *, segment_id: uuid.UUID, customer_id: uuid.UUID, now: datetime
) -> Explanation:
    """Every node's result for the customer and what it saw, from one statement selecting each
    node's compiled expression beside the whole verdict: it cannot disagree with evaluation."""
    seg = await get_segment(session, segment_id=segment_id)
    membership = await session.scalar(
        select(Membership).where(
            Membership.segment_id == seg.id,
            Membership.customer_id == customer_id,
            Membership.exited_at.is_(None),
        )
    )
    removed = bool(
        await session.scalar(select(Features.removed).where(Features.customer_id == customer_id))
    )
    known = (
        await session.scalar(
            select(Features.customer_id).where(Features.customer_id == customer_id)
        )
        is not None
    )
    if seg.kind != "dynamic" or seg.definition is None:
        return Explanation(
            seg.id,
            customer_id,
            membership is not None,
            known,
            removed,
            membership is not None,
            membership.entered_at if membership else None,
            now,
            None,
        )
    segments = await evaluation.active_segments(session)
    row = segments.get(seg.key) or _row(seg)
    comp = (
        evaluation.compiled(row, segments)
        if seg.key in segments
        else compiler.compile_definition(
            L.load(seg.definition), compiler.resolver(evaluation.infos(segments))
        )
    )
    flat: list[compiler.NodeTrace] = []

    def visit(t: compiler.NodeTrace) -> None:
        flat.append(t)
        for c in t.children:
            visit(c)

    visit(comp.trace)
    cols: list[Any] = [comp.match.label("verdict")]
    for i, t in enumerate(flat):
        cols.append(t.expr.label(f"r{i}"))
        cols.append((t.seen if t.seen is not None else literal(None)).label(f"v{i}"))
    result = (
        await session.execute(
            select(*cols).select_from(F).where(F.c.customer_id == customer_id),
            compiler.params(now, evaluation.shop_timezone()),
        )
    ).first()

    def build(t: compiler.NodeTrace) -> ExplainedNode:
        i = flat.index(t)
        return ExplainedNode(
            path=t.path or "/",
            kind=t.kind,
            condition=_own(t.node, t.kind),
            result=bool(result._mapping[f"r{i}"]) if result is not None else False,
            seen=result._mapping[f"v{i}"] if result is not None else None,
            children=[build(c) for c in t.children],
        )

    return Explanation(
        segment_id=seg.id,
        customer_id=customer_id,
        verdict=bool(result.verdict) if result is not None else False,
        known=known,
        removed=removed,
        member=membership is not None,
        member_since=membership.entered_at if membership else None,
        evaluated_at=now,
        tree=build(comp.trace),
    )


# --- static segments ------------------------------------------------------------------------

COLUMNS = ("customer_id", "email", "phone")


def normalise_phone(raw: str, *, region: str) -> str | None:
    """E.164 as profile stores it (Persian/Arabic digits, 00 and local forms), else None."""
    try:
        return identity.normalise_phone(raw, region=region)
    except identity.InvalidPhone:
        return None


def normalise_email(raw: str) -> str | None:
    try:
        return identity.normalise_email(raw)
    except identity.InvalidEmail:
        return None


@dataclass(slots=True)
class Rejected:
    line: int
    column: str
    value: str
    detail: str


@dataclass(slots=True)
class ImportResult:
    rows: int
    matched: int
    added: int
    removed: int
    rejected: list[Rejected]


async def import_members(
    session: AsyncSession,
    *,
    segment_id: uuid.UUID,
    content: bytes,
    mode: str,
    region: str,
    now: datetime,
) -> ImportResult:
    """A CSV with a header naming one of customer_id, email, phone (the first non-empty of them
    on each row identifies the customer). `add` keeps current members, `replace` makes the list
    exactly the matched customers. Unmatched or invalid rows are reported by line."""
    seg = await get_segment(session, segment_id=segment_id, lock=True)
    if seg.kind != "static" or seg.archived:
        raise Conflict(f"Segment {seg.key!r} is not an active static segment.")
    try:
        textual = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _csv_problem(1, "the file is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(textual))
    header = next(reader, None)
    cols = [h.strip().lower() for h in header or []]
    usable = [c for c in COLUMNS if c in cols]
    positions = {c: cols.index(c) for c in usable}
    if not usable:
        raise _csv_problem(1, f"the header needs a column {', '.join(COLUMNS)}")
    rejected: list[Rejected] = []
    wanted: list[tuple[int, str, str, str]] = []  # (line, column, as given, normalised)
    rows = 0
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        rows += 1
        given = {c: values[i].strip() for c, i in positions.items() if i < len(values)}
        col = next((c for c in usable if given.get(c)), usable[0])
        raw = given.get(col, "")
        if not raw:
            rejected.append(Rejected(line, col, raw, "empty"))
            continue
        norm = _normalise(col, raw, region)
        if norm is None:
            rejected.append(Rejected(line, col, raw, f"not a valid {col.replace('_', ' ')}"))
            continue
        wanted.append((line, col, raw, norm))
    # Two lookups whatever the file's size (arrays, not a bound parameter per row).
    ids = [uuid.UUID(n) for _, c, _, n in wanted if c == "customer_id"]
    known = {
        str(c)
        for c in await session.scalars(
            select(Features.customer_id).where(
                Features.customer_id == func.any(literal(ids, ARRAY(Uuid))),
                Features.removed.is_(False),
            )
        )
    }
    values_ = [n for _, c, _, n in wanted if c != "customer_id"]
    found = {
        r.value: r.customer_id
        for r in await session.execute(
            select(Identity.value, Identity.customer_id).where(
                Identity.value == func.any(literal(values_, ARRAY(Text)))
            )
        )
    }
    matched: set[uuid.UUID] = set()
    for line, col, raw, norm in wanted:
        if col == "customer_id":
            cid = uuid.UUID(norm) if norm in known else None
        else:
            cid = found.get(norm)
        if cid is None:
            rejected.append(Rejected(line, col, raw, "no such customer"))
        else:
            matched.add(cid)
    current = set(
        await session.scalars(
            select(M.c.customer_id).where(M.c.segment_id == seg.id, M.c.exited_at.is_(None))
        )
    )
    leave = sorted(current - matched) if mode == "replace" else []
    entered, exited = await evaluation.apply_changes(
        session,
        segments_by_id={seg.id: _row(seg)},
        enter=[(seg.id, c) for c in sorted(matched - current)],
        leave=[(seg.id, c) for c in leave],
        now=now,
        cause="upload",
    )
    await _after_static_change(
        session,
        seg,
        matched.symmetric_difference(current) if mode == "replace" else matched - current,
        now,
    )
    rejected.sort(key=lambda r: r.line)
    return ImportResult(rows, len(matched), entered, exited, rejected)


def _normalise(column: str, raw: str, region: str) -> str | None:
    if column == "customer_id":
        try:
            return str(uuid.UUID(identity.ascii_digits(raw)))
        except ValueError:
            return None
    if column == "email":
        return normalise_email(raw)
    return normalise_phone(raw, region=region)


def _csv_problem(line: int, detail: str) -> Problem:
    return Problem(
        422,
        f"line {line}: {detail}",
        title="Your request is not valid",
        type="validation",
        errors=[{"line": line, "pointer": "/body", "detail": detail}],
    )


async def _after_static_change(
    session: AsyncSession, seg: Segment, customers: set[uuid.UUID], now: datetime
) -> None:
    """Dynamic segments referring to this static one change for these customers too."""
    await session.execute(
        update(Segment).where(Segment.id == seg.id).values(evaluated_at=now, updated_at=now)
    )
    segments = await evaluation.active_segments(session)
    if customers and evaluation.dependents(seg.key, segments):
        await evaluation.reevaluate_customers(
            session, customer_ids=customers, now=now, cause="upload"
        )


async def remove_member(
    session: AsyncSession, *, segment_id: uuid.UUID, customer_id: uuid.UUID, now: datetime
) -> None:
    seg = await get_segment(session, segment_id=segment_id, lock=True)
    if seg.kind != "static":
        raise Conflict(f"Segment {seg.key!r} is dynamic: its definition decides its members.")
    _, exited = await evaluation.apply_changes(
        session,
        segments_by_id={seg.id: _row(seg)},
        enter=[],
        leave=[(seg.id, customer_id)],
        now=now,
        cause="upload",
    )
    if not exited:
        raise NotFound(f"Customer {customer_id} is not a member of {seg.key!r}.")
    await _after_static_change(session, seg, {customer_id}, now)

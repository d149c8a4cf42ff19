"""CSV import of customers: create-or-update by email, then phone; a row-level error report;
resumable; set-based.

An import is a row in customer_imports holding the file (until it is done) and `next_row`,
the first data row not yet applied. Rows are applied in batches of `import_batch_rows`, each
batch one transaction that also records its errors and moves `next_row`; the import row is
locked by the batch, so two processors (the API and the worker after a crash, say) never
apply a row twice. Re-posting the same bytes finds the same import (content hash) and
continues it.

A batch is validated row by row in memory first (rows.validate): a row with any error writes
nothing. The valid rows are resolved in order against who holds their identities (and what
earlier rows of the batch claimed), then written in a handful of statements: new customers
(one INSERT from arrays), changed customers (one UPDATE from arrays, only the fields that
differ), identity claims, tags, errors, events (CustomerRegistered / CustomerUpdated through
the one snapshot builder) and progress. Should the database still refuse the batch, it is
replayed one row per savepoint, so only the failing row is reported and skipped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.db import Database
from vafa.kit.outbox import OutboxEvent
from vafa.profile.attributes import service as attributes
from vafa.profile.config import Settings
from vafa.profile.customers import service as customers
from vafa.profile.customers import snapshot as snapshots
from vafa.profile.customers.identities import Identity, IdentityKind
from vafa.profile.events import outbox
from vafa.profile.imports import rows as csvrows
from vafa.profile.imports.rows import Row, RowError
from vafa.profile.models import CustomerImport

log = structlog.get_logger(__name__)


class ImportRace(RuntimeError):
    """An identity this batch was claiming was claimed concurrently: replay the batch."""


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def count_rows(text_: str) -> int:
    _, data = csvrows.read(text_)
    return sum(1 for _ in data)


async def register(
    session: AsyncSession,
    *,
    content: bytes,
    filename: str | None,
    created_by: str | None,
) -> tuple[CustomerImport, bool]:
    """The import of these bytes: (the import, whether it is new). Raises rows.BadFile when the
    file cannot be imported at all (not UTF-8, no header, an unknown column...)."""
    text_ = csvrows.decode(content)
    header, _ = csvrows.read(text_)
    csvrows.check_custom_columns(header, await attributes.definitions(session))
    digest = content_hash(content)
    total = count_rows(text_)
    inserted = await session.scalar(
        text(
            "INSERT INTO customer_imports (id, content_hash, filename, content, status, "
            "total_rows, next_row, created_count, updated_count, error_count, created_by) "
            "VALUES (:id, :h, :f, :c, 'pending', :t, 1, 0, 0, 0, :by) "
            "ON CONFLICT (content_hash) DO NOTHING RETURNING id"
        ),
        {
            "id": uuid.uuid4(),
            "h": digest,
            "f": filename,
            "c": content,
            "t": total,
            "by": created_by,
        },
    )
    found = await session.scalar(
        select(CustomerImport)
        .where(CustomerImport.content_hash == digest)
        .execution_options(populate_existing=True)
    )
    assert found is not None
    return found, inserted is not None


# -- applying a batch ----------------------------------------------------------------------

# The plain fields a row may set, as customers columns. The statements below are built once
# from this constant list (no input reaches their text), hence the S608 waivers.
_COLUMNS = csvrows.PLAIN

_LOAD = text(
    "SELECT id, first_name, last_name, lifecycle_stage, country_code, city, created_at, "  # noqa: S608
    "updated_at, kind, custom_fields, "
    + ", ".join(c for c in _COLUMNS if c not in ("first_name", "last_name", "country_code", "city"))
    + " FROM customers WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE"
)

_SQL_TYPES = {"birth_date": "date"}


def _array(name: str) -> str:
    return f"CAST(:{name} AS {_SQL_TYPES.get(name, 'text')}[])"


_INSERT = text(
    "INSERT INTO customers (id, lifecycle_stage, kind, custom_fields, created_at, updated_at, "  # noqa: S608
    + ", ".join(_COLUMNS)
    + ") SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:stages AS text[]), "
    "CAST(:kinds AS text[]), CAST(CAST(:customs AS text[]) AS jsonb[]), "
    "CAST(:created AS timestamptz[]), "
    "CAST(:created AS timestamptz[]), " + ", ".join(_array(c) for c in _COLUMNS) + ")"
)
# NULL in an array means "leave it": only the fields a row changed travel.
_UPDATE = text(
    "UPDATE customers c SET "  # noqa: S608
    + ", ".join(f"{col} = COALESCE(u.{col}, c.{col})" for col in _COLUMNS)
    + ", custom_fields = c.custom_fields || COALESCE(u.custom, '{}'::jsonb), updated_at = u.at "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(CAST(:customs AS text[]) AS jsonb[]), "
    "CAST(:at AS timestamptz[]), "
    + ", ".join(_array(c) for c in _COLUMNS)
    + ") AS u(id, custom, at, "
    + ", ".join(_COLUMNS)
    + ") WHERE c.id = u.id"
)
_CLAIM = text(
    "INSERT INTO customer_identities (customer_id, kind, value) "
    "SELECT * FROM unnest(CAST(:cids AS uuid[]), CAST(:kinds AS text[]), "
    "CAST(:values AS text[])) ON CONFLICT (kind, value) DO NOTHING RETURNING kind, value"
)
_TAGS = text(
    "INSERT INTO customer_tags (customer_id, tag) "
    "SELECT * FROM unnest(CAST(:cids AS uuid[]), CAST(:tags AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING customer_id"
)
_IDENTITIES = text(
    "SELECT customer_id, kind, value FROM customer_identities "
    "WHERE customer_id = ANY(CAST(:ids AS uuid[])) ORDER BY id"
)


@dataclass(slots=True)
class Applied:
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)


@dataclass(slots=True)
class _Target:
    id: uuid.UUID
    new: bool
    first_row: int
    fields: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)


async def apply_rows(session: AsyncSession, *, rows: Sequence[Row], cause: str) -> Applied:
    """Writes valid rows (in order) in a few statements; see the module docstring. Raises
    ImportRace when a concurrent writer claimed an identity first (replay the batch)."""
    out = Applied()
    if not rows:
        return out
    wanted = list(dict.fromkeys(i for r in rows for i in r.identities))
    held = await customers.owners(session, wanted)
    current = {
        r.id: r for r in (await session.execute(_LOAD, {"ids": sorted(set(held.values()))})).all()
    }
    claims: dict[Identity, uuid.UUID] = {}
    targets: dict[uuid.UUID, _Target] = {}
    tags: dict[tuple[uuid.UUID, str], None] = {}
    now = datetime.now(UTC)
    for row in rows:
        owners = {claims.get(i) or held.get(i) for i in row.identities} - {None}
        if len(owners) > 1:
            out.errors.append(
                RowError(
                    row.number,
                    "phone",
                    "the email and the phone belong to two different customers",
                )
            )
            continue
        owner = owners.pop() if owners else None
        if owner is None:
            target = _Target(id=uuid.uuid4(), new=True, first_row=row.number)
            targets[target.id] = target
        elif owner in targets:
            target = targets[owner]
        else:
            if owner not in current:  # held by a file gone since (erased mid-batch)
                out.errors.append(RowError(row.number, "email", "the matching file is gone"))
                continue
            target = _Target(id=owner, new=False, first_row=row.number)
            targets[owner] = target
        for identity in row.identities:
            if identity not in held and identity not in claims:
                claims[identity] = target.id
                target.changed.add("emails" if identity.kind == IdentityKind.email else "phones")
        existing = current.get(target.id)
        for name, value in row.fields.items():
            before = target.fields.get(name, getattr(existing, name) if existing else None)
            if before != value:
                target.fields[name] = value
                target.changed.add(name)
        if row.custom:
            stored = dict(existing.custom_fields) if existing else {}
            stored.update(target.custom)
            for key, value in row.custom.items():
                if stored.get(key) != value:
                    target.custom[key] = value
                    target.changed.add("custom_fields")
        for tag in row.tags:
            tags[(target.id, tag)] = None

    new = [t for t in targets.values() if t.new]
    changed = [t for t in targets.values() if not t.new and (t.fields or t.custom)]
    if new:
        await session.execute(
            _INSERT,
            {
                "ids": [t.id for t in new],
                "stages": ["lead"] * len(new),
                "kinds": ["lead"] * len(new),
                "customs": [json.dumps(t.custom, ensure_ascii=False) for t in new],
                "created": [now] * len(new),
                **{c: [t.fields.get(c) for t in new] for c in _COLUMNS},
            },
        )
    if changed:
        changed.sort(key=lambda t: t.id)
        await session.execute(
            _UPDATE,
            {
                "ids": [t.id for t in changed],
                "customs": [
                    json.dumps(t.custom, ensure_ascii=False) if t.custom else None for t in changed
                ],
                "at": [now] * len(changed),
                **{c: [t.fields.get(c) for t in changed] for c in _COLUMNS},
            },
        )
    if claims:
        ordered = sorted(claims.items(), key=lambda kv: (str(kv[0].kind), kv[0].value))
        got = await session.execute(
            _CLAIM,
            {
                "cids": [cid for _, cid in ordered],
                "kinds": [i.kind.value for i, _ in ordered],
                "values": [i.value for i, _ in ordered],
            },
        )
        if len(got.all()) != len(ordered):
            raise ImportRace(cause)
    if tags:
        pairs = sorted(tags)
        tagged = await session.execute(
            _TAGS, {"cids": [c for c, _ in pairs], "tags": [t for _, t in pairs]}
        )
        for cid in set(tagged.scalars()):
            targets[cid].changed.add("tags")

    touched = [t for t in targets.values() if t.new or t.changed]
    await _emit(session, touched, cause=cause)
    out.created = len(new)
    out.updated = sum(1 for t in targets.values() if not t.new and t.changed)
    return out


async def _emit(session: AsyncSession, touched: Sequence[_Target], *, cause: str) -> None:
    """CustomerRegistered (source "import") for new files, CustomerUpdated for changed ones:
    snapshots for the whole batch in three statements."""
    if not touched:
        return
    ids = sorted(t.id for t in touched)
    states = {
        r.id: customers.CustomerState(
            id=r.id,
            first_name=r.first_name,
            last_name=r.last_name,
            lifecycle_stage=r.lifecycle_stage,
            country_code=r.country_code,
            city=r.city,
            created_at=r.created_at,
            updated_at=r.updated_at,
            kind=r.kind,
        )
        for r in (
            await session.execute(
                text(
                    "SELECT id, first_name, last_name, lifecycle_stage, country_code, city, "
                    "created_at, updated_at, kind FROM customers "
                    "WHERE id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": ids},
            )
        ).all()
    }
    held: dict[uuid.UUID, list[Identity]] = {}
    for cid, kind, value in (await session.execute(_IDENTITIES, {"ids": ids})).all():
        held.setdefault(cid, []).append(Identity(IdentityKind(kind), value))
    extras = await snapshots.load_extras(session, ids)
    events: list[OutboxEvent] = []
    for t in sorted(touched, key=lambda t: t.first_row):
        snap = customers.build_snapshot(states[t.id], held.get(t.id, []), extras.get(t.id))
        if t.new:
            events.append(customers.registered_event(snap, source="import"))
        else:
            events.append(
                customers.updated_event(
                    snap,
                    changed_fields=sorted(t.changed),
                    cause_id=f"{cause}:row:{t.first_row}",
                )
            )
    await outbox.add_many(session, events)


# -- running an import ---------------------------------------------------------------------

_LOCK_IMPORT = text("SELECT next_row, status FROM customer_imports WHERE id = :id FOR UPDATE")
_PROGRESS = text(
    "UPDATE customer_imports SET next_row = :next, status = 'running', "
    "created_count = created_count + :created, updated_count = updated_count + :updated, "
    "error_count = error_count + :errors, updated_at = now() WHERE id = :id"
)
_ERRORS = text(
    'INSERT INTO customer_import_errors (import_id, row, "column", message) '
    "SELECT :id, * FROM unnest(CAST(:rows AS integer[]), CAST(:columns AS text[]), "
    "CAST(:messages AS text[])) ON CONFLICT DO NOTHING"
)
_FINISH = text(
    "UPDATE customer_imports SET status = :status, failure = :failure, content = NULL, "
    "finished_at = now(), updated_at = now() WHERE id = :id AND status IN ('pending', 'running')"
)


def _batches(
    data: Iterator[tuple[int, list[str]]], size: int
) -> Iterator[list[tuple[int, list[str]]]]:
    while batch := list(itertools.islice(data, size)):
        yield batch


async def _apply_batch(
    session: AsyncSession,
    valid: list[Row],
    *,
    cause: str,
) -> Applied:
    """The rows in one go; replayed on a lost identity race; and if the database refuses the
    batch, one row per savepoint so only the refused rows are skipped (and reported)."""
    for attempt in range(3):
        try:
            async with session.begin_nested():
                return await apply_rows(session, rows=valid, cause=cause)
        except ImportRace:
            log.info("import_identity_race", cause=cause, attempt=attempt)
        except DBAPIError as exc:
            log.warning("import_batch_refused", cause=cause, error=str(exc.orig))
            break
    out = Applied()
    for row in valid:
        try:
            async with session.begin_nested():
                one = await apply_rows(session, rows=[row], cause=cause)
        except (DBAPIError, ImportRace) as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            out.errors.append(RowError(row.number, "", f"the database refused the row: {reason}"))
            continue
        out.created += one.created
        out.updated += one.updated
        out.errors += one.errors
    return out


async def run(
    db: Database,
    import_id: uuid.UUID,
    *,
    settings: Settings,
    max_batches: int | None = None,
) -> None:
    """Applies the import from its `next_row` to the end (or for `max_batches` batches), a
    batch per transaction. Safe to run twice at once: each batch locks the import and starts
    from the `next_row` it finds."""
    async with db.sessionmaker() as session:
        imp = await session.get(CustomerImport, import_id)
        if imp is None or imp.status in ("done", "failed") or imp.content is None:
            return
        content = imp.content
        definitions = await attributes.definitions(session)
    cause = f"import:{import_id}"
    try:
        header, data = csvrows.read(csvrows.decode(content))
        csvrows.check_custom_columns(header, definitions)
        batches = 0
        for batch in _batches(data, settings.import_batch_rows):
            async with db.sessionmaker() as session, session.begin():
                state = (await session.execute(_LOCK_IMPORT, {"id": import_id})).one()
                if state.status not in ("pending", "running"):
                    return
                todo = [(n, cells) for n, cells in batch if n >= state.next_row]
                if not todo:
                    continue  # applied already (by an earlier run)
                valid: list[Row] = []
                errors: list[RowError] = []
                for number, cells in todo:
                    result = csvrows.validate(
                        number,
                        cells,
                        header,
                        definitions=definitions,
                        default_region=settings.default_region,
                    )
                    if isinstance(result, Row):
                        valid.append(result)
                    else:
                        errors += result
                applied = await _apply_batch(session, valid, cause=cause)
                errors += applied.errors
                if errors:
                    await session.execute(
                        _ERRORS,
                        {
                            "id": import_id,
                            "rows": [e.row for e in errors],
                            "columns": [e.column for e in errors],
                            "messages": [e.message for e in errors],
                        },
                    )
                await session.execute(
                    _PROGRESS,
                    {
                        "id": import_id,
                        "next": batch[-1][0] + 1,
                        "created": applied.created,
                        "updated": applied.updated,
                        "errors": len({e.row for e in errors}),
                    },
                )
            batches += 1
            if max_batches is not None and batches >= max_batches:
                return
    except csvrows.BadFile as exc:
        await _finish(db, import_id, status="failed", failure=str(exc))
        return
    await _finish(db, import_id, status="done", failure=None)


async def _finish(db: Database, import_id: uuid.UUID, *, status: str, failure: str | None) -> None:
    async with db.sessionmaker() as session, session.begin():
        await session.execute(_FINISH, {"id": import_id, "status": status, "failure": failure})
    log.info("import_finished", import_id=str(import_id), status=status)


_CLAIM_IMPORT = text(
    "UPDATE customer_imports SET status = 'running', updated_at = now() WHERE id = ("
    " SELECT id FROM customer_imports WHERE status = 'pending'"
    " OR (status = 'running' AND updated_at < now() - make_interval(secs => :stale))"
    " ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
)


async def claim_next(db: Database, *, stale_seconds: float) -> uuid.UUID | None:
    """An import waiting for the worker (pending, or running but idle for `stale_seconds`:
    its processor died), marked running."""
    async with db.sessionmaker() as session, session.begin():
        found: uuid.UUID | None = await session.scalar(_CLAIM_IMPORT, {"stale": stale_seconds})
        return found


async def report(
    session: AsyncSession, import_id: uuid.UUID, *, after_row: int, limit: int
) -> tuple[CustomerImport, list[RowError]] | None:
    imp = await session.get(CustomerImport, import_id, populate_existing=True)
    if imp is None:
        return None
    rows = await session.execute(
        text(
            'SELECT row, "column", message FROM customer_import_errors WHERE import_id = :id '
            'AND row > :after ORDER BY row, "column" LIMIT :limit'
        ),
        {"id": import_id, "after": after_row, "limit": limit},
    )
    return imp, [RowError(r, c, m) for r, c, m in rows.all()]

"""The duplicate review queue: exact duplicates (one shop order named identities held by two
files) and suggested near-duplicates (folded names alike by trigram similarity, stronger when
a phone number shares its last eight digits)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.errors import Conflict, NotFound
from vafa.profile.customers import service as customers
from vafa.profile.models import DuplicateCandidate

# A phone "alike" when its last digits match (the same line written with another country or
# operator prefix, or a typo there).
PHONE_TAIL = 8
# Below the name threshold, a phone match still suggests a pair from this name similarity on.
NAME_WITH_PHONE = 0.3


@dataclass(frozen=True, slots=True)
class Pair:
    a: uuid.UUID
    b: uuid.UUID
    reason: str
    score: float
    details: dict[str, Any]


def pair(x: uuid.UUID, y: uuid.UUID, reason: str, score: float, details: dict[str, Any]) -> Pair:
    a, b = sorted((x, y))
    return Pair(a, b, reason, round(score, 4), details)


_RECORD = text(
    "INSERT INTO duplicate_candidates (customer_a, customer_b, reason, score, details, status)"
    " SELECT a, b, r, s, CAST(d AS jsonb), 'open' FROM unnest(CAST(:a AS uuid[]),"
    " CAST(:b AS uuid[]), CAST(:r AS text[]), CAST(:s AS float8[]), CAST(:d AS text[]))"
    " AS t(a, b, r, s, d)"
    " ON CONFLICT (customer_a, customer_b) DO NOTHING RETURNING id"
)


async def record(session: AsyncSession, pairs: Sequence[Pair]) -> list[int]:
    """Queues the pairs (one statement); a pair already queued (in any status: a dismissed
    pair stays dismissed) is left as it is. Returns the ids queued now."""

    unique = {(p.a, p.b): p for p in pairs if p.a != p.b}
    if not unique:
        return []
    ps = list(unique.values())
    result = await session.execute(
        _RECORD,
        {
            "a": [p.a for p in ps],
            "b": [p.b for p in ps],
            "r": [p.reason for p in ps],
            "s": [p.score for p in ps],
            "d": [json.dumps(p.details) for p in ps],
        },
    )
    return list(result.scalars())


_SIMILAR = text(
    "SELECT c.id, similarity(c.search_name, me.search_name) AS name_score,"
    " EXISTS (SELECT 1 FROM customer_identities i JOIN customer_identities mine"
    "  ON mine.customer_id = me.id AND mine.kind = 'phone'"
    "  AND right(mine.value, :tail) = right(i.value, :tail)"
    "  WHERE i.customer_id = c.id AND i.kind = 'phone') AS phone_alike"
    " FROM customers me JOIN customers c ON c.search_name % me.search_name"
    " WHERE me.id = :id AND c.id <> me.id AND c.merged_into IS NULL AND c.erased_at IS NULL"
    " AND length(me.search_name) > 2"
    " ORDER BY name_score DESC LIMIT 50"
)


async def scan(session: AsyncSession, *, customer_id: uuid.UUID, threshold: float) -> list[int]:
    """Queues the near-duplicates of one file: names alike (trigram similarity of the folded
    names, index-assisted) at `threshold` or more, or from NAME_WITH_PHONE on when a phone
    shares its last PHONE_TAIL digits. Returns the candidate ids queued now."""
    await customers.get_file(session, customer_id)
    # The % operator uses the GIN index at pg_trgm's threshold; the score filters after.
    await session.execute(
        text("SELECT set_config('pg_trgm.similarity_threshold', :t, true)"),
        {"t": str(min(threshold, NAME_WITH_PHONE))},
    )
    rows = (await session.execute(_SIMILAR, {"id": customer_id, "tail": PHONE_TAIL})).all()
    pairs = []
    for other, name_score, phone_alike in rows:
        if phone_alike and name_score >= NAME_WITH_PHONE:
            pairs.append(
                pair(
                    customer_id,
                    other,
                    "similar_name_phone",
                    min(1.0, name_score + 0.3),
                    {"name_similarity": round(name_score, 4), "phone_tail_match": True},
                )
            )
        elif name_score >= threshold:
            pairs.append(
                pair(
                    customer_id,
                    other,
                    "similar_name",
                    name_score * 0.8,
                    {"name_similarity": round(name_score, 4)},
                )
            )
    return await record(session, pairs)


_RECENT = text(
    "SELECT id FROM customers WHERE updated_at >= :since AND merged_into IS NULL"
    " AND erased_at IS NULL ORDER BY updated_at DESC LIMIT :limit"
)


async def scan_recent(
    session: AsyncSession, *, since: datetime, threshold: float, limit: int = 1000
) -> int:
    """Scans the files opened or changed since `since` (orders, imports, the club, staff), at
    most `limit` of them: the number of pairs queued."""
    ids = list((await session.execute(_RECENT, {"since": since, "limit": limit})).scalars())
    queued = 0
    for cid in ids:
        queued += len(await scan(session, customer_id=cid, threshold=threshold))
    return queued


def encode_cursor(candidate_id: int) -> str:
    return base64.urlsafe_b64encode(str(candidate_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("the cursor is not one this API issued") from exc


async def list_candidates(
    session: AsyncSession, *, status: str, limit: int, cursor: str | None
) -> tuple[list[DuplicateCandidate], str | None]:
    """A page of the queue, by id (oldest first); ValueError for a foreign cursor."""
    query = select(DuplicateCandidate).where(DuplicateCandidate.status == status)
    if cursor:
        query = query.where(DuplicateCandidate.id > decode_cursor(cursor))
    rows = list(
        (await session.scalars(query.order_by(DuplicateCandidate.id).limit(limit + 1))).all()
    )
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1].id)
    return rows, None


async def get_candidate(
    session: AsyncSession, candidate_id: int, *, lock: bool = False
) -> DuplicateCandidate:
    query = select(DuplicateCandidate).where(DuplicateCandidate.id == candidate_id)
    if lock:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise NotFound(f"No duplicate candidate has the id {candidate_id}.", id=candidate_id)
    return row


async def dismiss(session: AsyncSession, *, candidate_id: int, by: str) -> DuplicateCandidate:
    """Not the same person: the pair leaves the queue and is not suggested again."""
    row = await get_candidate(session, candidate_id, lock=True)
    if row.status == "merged":
        raise Conflict("This pair was merged; unmerge it instead.", id=candidate_id)
    row.status, row.resolved_by, row.resolved_at = "dismissed", by, datetime.now(UTC)
    await session.flush()
    return row

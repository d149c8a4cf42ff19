"""What loyalty keeps of a customer besides points, and what it does when profile merges or
erases one."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.loyalty.ledger import store as ledger_store

_BIRTH_DATES = text(
    "UPDATE accounts AS a SET birth_date = v.birth_date, updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:dates AS date[])) AS v(customer_id, birth_date) "
    "WHERE a.customer_id = v.customer_id AND a.erased_at IS NULL "
    "AND a.birth_date IS DISTINCT FROM v.birth_date"
)


def parse_birth_date(value: str) -> date | None:
    """The snapshot's ISO date ("1990-03-21"); empty or unreadable: unknown."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


async def set_birth_dates(session: AsyncSession, dates: Mapping[uuid.UUID, date | None]) -> None:
    """Opens the accounts and records the birth dates the snapshots carry (last one wins)."""
    if not dates:
        return
    await ledger_store.open_accounts(session, dates)
    await session.execute(_BIRTH_DATES, {"ids": list(dates), "dates": list(dates.values())})


_MERGED = text(
    "UPDATE accounts SET merged_into = :survivor, updated_at = now() WHERE customer_id = :merged"
)
# The merged customer's orders now belong to the survivor, so later refunds find their lines.
_MOVE_LINES = text(
    "UPDATE order_line_points SET customer_id = :survivor WHERE customer_id = :merged "
    "AND NOT EXISTS (SELECT 1 FROM order_line_points o WHERE o.customer_id = :survivor "
    "AND o.order_ref = order_line_points.order_ref AND o.line_id = order_line_points.line_id)"
)


async def merge(
    session: AsyncSession, *, survivor_id: uuid.UUID, merged_id: uuid.UUID, merge_id: str
) -> bool:
    """Moves the merged customer's open lots (with their dates), balance and pending points to
    the survivor: two `merge` entries (keys `merge:<merge_id>:out` / `:in`), PointsAdjusted on
    both sides. Idempotent by merge id. Returns False when it had been done."""
    if survivor_id == merged_id:
        return False
    key = f"merge:{merge_id}"
    book = await ledger_store.load(
        session,
        customers=[survivor_id, merged_id],
        keys=[f"{key}:out"],
        lots_of=[merged_id],
    )
    out, _ = book.move_all(merged_id, into=survivor_id, key=key, ref=merge_id)
    if out is None:
        return False
    await ledger_store.save(session, book)
    params = {"survivor": survivor_id, "merged": merged_id}
    await session.execute(_MERGED, params)
    await session.execute(_MOVE_LINES, params)
    return True


_ERASE = text(
    "UPDATE accounts SET birth_date = NULL, erased_at = COALESCE(erased_at, :now), "
    "updated_at = now() WHERE customer_id = :id"
)


async def erase(
    session: AsyncSession, *, customer_id: uuid.UUID, now: datetime | None = None
) -> None:
    """Drops the personal data loyalty holds (the birth date); keeps every amount, entry and
    lot, which are keyed by the opaque customer id only."""
    await session.execute(_ERASE, {"id": customer_id, "now": now or datetime.now(UTC)})

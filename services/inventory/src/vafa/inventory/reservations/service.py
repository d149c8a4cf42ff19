"""Reservations by API (the shop's or the club's checkout): the same commands and the same
write path as the order events (`stock.batch`), but strict: all or nothing, and a request that
cannot be met is a 409 naming the available units per SKU."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.inventory.reservations.combiner import Combiner
from vafa.inventory.reservations.schemas import (
    AllocationRead,
    ReservationCreate,
    ReservationLineRead,
    ReservationRead,
)
from vafa.inventory.stock import batch, rules
from vafa.inventory.stock.rules import (
    Command,
    Confirm,
    InsufficientStock,
    Order,
    Release,
    Reserve,
)
from vafa.inventory.stock.service import InsufficientStockProblem
from vafa.kit.errors import Conflict, NotFound

_RESERVATION = text(
    "SELECT order_ref, state, source, expires_at, created_at, updated_at FROM reservations "
    "WHERE order_ref = :ref AND state <> 'new'"
)
_LINES = text(
    "SELECT sku, requested, allocated FROM reservation_lines WHERE order_ref = :ref ORDER BY sku"
)
_ALLOCATIONS = text(
    "SELECT m.sku, m.location_id, sum(m.reserved_delta), "
    "-coalesce(sum(m.delta) FILTER (WHERE m.reason = 'sale'), 0) "
    "FROM stock_movements m LEFT JOIN locations loc ON loc.id = m.location_id "
    "WHERE m.order_ref = :ref GROUP BY m.sku, m.location_id, loc.priority "
    "ORDER BY m.sku, loc.priority, m.location_id"
)


async def get(session: AsyncSession, order_ref: str) -> ReservationRead:
    row = (await session.execute(_RESERVATION, {"ref": order_ref})).first()
    if row is None:
        raise NotFound(f"There is no reservation for order {order_ref!r}.", order_ref=order_ref)
    allocations: dict[str, list[AllocationRead]] = {}
    for sku, loc, held, sold in await session.execute(_ALLOCATIONS, {"ref": order_ref}):
        if held or sold:
            allocations.setdefault(sku, []).append(
                AllocationRead(location_id=loc, held=held, sold=sold)
            )
    lines = [
        ReservationLineRead(
            sku=sku, requested=requested, allocated=allocated, allocations=allocations.get(sku, [])
        )
        for sku, requested, allocated in await session.execute(_LINES, {"ref": order_ref})
    ]
    return ReservationRead(
        order_ref=row.order_ref,
        state=row.state,
        source=row.source,
        expires_at=row.expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        lines=lines,
    )


async def _run(session: AsyncSession, command: Command, *, default_threshold: int) -> bool:
    try:
        result = await batch.apply(session, [command], default_threshold=default_threshold)
    except InsufficientStock as exc:
        raise InsufficientStockProblem(exc.shortages) from exc
    except rules.StateConflict as exc:
        ref = exc.order_ref
        if exc.state == rules.NEW:
            raise NotFound(f"There is no reservation for order {ref!r}.", order_ref=ref) from exc
        raise Conflict(
            f"The reservation for order {ref!r} is {exc.state}.", order_ref=ref, state=exc.state
        ) from exc
    return result.outcomes[0].changed


def _from_book(order: Order) -> ReservationRead:
    """The reservation as the unit of work that made it wrote it (what `get` would read)."""
    allocations: dict[str, list[AllocationRead]] = {}
    for (sku, loc), held in order.held.items():  # in allocation order
        allocations.setdefault(sku, []).append(AllocationRead(location_id=loc, held=held, sold=0))
    assert order.created_at is not None and order.now is not None
    return ReservationRead(
        order_ref=order.order_ref,
        state="held",
        source=order.source,
        expires_at=order.expires_at,
        created_at=order.created_at,
        updated_at=order.now,
        lines=[
            ReservationLineRead(
                sku=sku,
                requested=requested,
                allocated=allocated,
                allocations=allocations.get(sku, []),
            )
            for sku, (requested, allocated) in sorted(order.lines.items())
        ],
    )


async def create(
    session: AsyncSession,
    body: ReservationCreate,
    *,
    combiner: Combiner,
    hold_seconds: int,
    source: str,
    author: str,
) -> tuple[ReservationRead, bool]:
    """Holds the lines; (reservation, created). The same request again returns the existing
    reservation; another request under the same order_ref is a 409. The hold itself is made by
    the combiner, together with the other requests waiting at that moment."""
    lines = rules.merge_lines([(li.sku, li.quantity) for li in body.lines])
    expires = datetime.now(UTC) + timedelta(seconds=body.hold_seconds or hold_seconds)
    command = Reserve(
        body.order_ref, lines, expires, source=source, strict=True, note="api", author=author
    )
    outcome, order = await combiner.reserve(command)
    if outcome.refused is not None:
        raise InsufficientStockProblem(outcome.refused)
    if outcome.changed:
        return _from_book(order), True
    existing = await get(session, body.order_ref)
    if sorted((li.sku, li.requested) for li in existing.lines) != sorted(lines):
        raise Conflict(
            f"Order {body.order_ref!r} already has a different reservation.",
            order_ref=body.order_ref,
            state=existing.state,
        )
    return existing, False


async def confirm(
    session: AsyncSession, order_ref: str, *, default_threshold: int, author: str
) -> None:
    """The held units become a sale; confirming again changes nothing."""
    await _run(
        session,
        Confirm(order_ref, (), strict=True, note="api", author=author),
        default_threshold=default_threshold,
    )


async def release(
    session: AsyncSession, order_ref: str, *, default_threshold: int, author: str
) -> None:
    """Releases what the order holds; releasing again changes nothing. A confirmed (sold)
    reservation cannot be released here (cancel the order instead)."""
    await _run(
        session,
        Release(order_ref, note="api", strict=True, author=author),
        default_threshold=default_threshold,
    )

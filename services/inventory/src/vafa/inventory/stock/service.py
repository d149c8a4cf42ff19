"""Stock reads and the staff's stock writes. Every write goes through `batch.apply` (the one
unit-of-work path, with the rules of `rules`); this module turns requests into its commands
and its refusals into problems."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.inventory.models import DEFAULT_LOCATION, StockItem
from vafa.inventory.stock import batch, rules
from vafa.inventory.stock.rules import Adjust, InsufficientStock, Shortage
from vafa.inventory.stock.schemas import (
    Availability,
    LocationStock,
    MovementLine,
    MovementRead,
    StockRead,
    StockStatus,
    SubscriptionRead,
)
from vafa.kit.errors import Conflict, NotFound, Problem


class InsufficientStockProblem(Problem):
    def __init__(self, shortages: Sequence[Shortage]) -> None:
        listed = ", ".join(
            f"{s.sku}: {s.requested} requested, {s.available} available" for s in shortages
        )
        super().__init__(
            409,
            f"Not enough stock: {listed}.",
            title="Insufficient stock",
            type="insufficient-stock",
            items=[
                {"sku": s.sku, "requested": s.requested, "available": s.available}
                for s in shortages
            ],
        )


def status_of(available: int, threshold: int) -> StockStatus:
    return rules.status_of(available, threshold)


def threshold_of(item: StockItem, default: int) -> int:
    return rules.threshold_of(item.low_stock_threshold, default)


async def get_item(session: AsyncSession, sku: str) -> StockItem | None:
    return await session.get(StockItem, sku, populate_existing=True)


_STOCK = text(
    "SELECT i.sku, i.on_hand, i.reserved, i.low_stock_threshold, i.updated_at, "
    "l.location_id, l.on_hand, l.reserved FROM stock_items i "
    "LEFT JOIN stock_levels l ON l.sku = i.sku "
    "LEFT JOIN locations loc ON loc.id = l.location_id "
    "WHERE i.sku = ANY(CAST(:skus AS text[])) ORDER BY i.sku, loc.priority, loc.id"
)


async def read_stock(
    session: AsyncSession, skus: Sequence[str], *, default_threshold: int
) -> list[StockRead]:
    """The SKUs' totals and their breakdown per location (unknown SKUs are left out)."""
    out: dict[str, StockRead] = {}
    for (
        sku,
        on_hand,
        reserved,
        threshold,
        updated_at,
        loc,
        l_on_hand,
        l_reserved,
    ) in await session.execute(_STOCK, {"skus": list(skus)}):
        if sku not in out:
            t = rules.threshold_of(threshold, default_threshold)
            available = max(0, on_hand - reserved)
            out[sku] = StockRead(
                sku=sku,
                on_hand=on_hand,
                reserved=reserved,
                available=available,
                status=rules.status_of(available, t),
                low_stock_threshold=t,
                updated_at=updated_at,
                locations=[],
            )
        if loc is not None:
            out[sku].locations.append(
                LocationStock(
                    location_id=loc,
                    on_hand=l_on_hand,
                    reserved=l_reserved,
                    available=max(0, l_on_hand - l_reserved),
                )
            )
    return list(out.values())


async def get_stock(session: AsyncSession, sku: str, *, default_threshold: int) -> StockRead:
    found = await read_stock(session, [sku], default_threshold=default_threshold)
    if not found:
        raise NotFound(f"No stock is recorded for SKU {sku!r}.", sku=sku)
    return found[0]


async def set_level(
    session: AsyncSession,
    *,
    sku: str,
    on_hand: int,
    low_stock_threshold: int | None,
    reason: str,
    author: str,
    default_threshold: int,
) -> StockItem:
    """A count correction at the default location (the single-level API of before locations):
    the SKU's units there become `on_hand`."""
    await batch.apply(
        session,
        [
            Adjust(
                DEFAULT_LOCATION,
                rules.CORRECTION,
                [(sku, on_hand)],
                key=f"correction:{uuid.uuid4()}",
                author=author,
                note=reason,
                threshold=low_stock_threshold,
            )
        ],
        default_threshold=default_threshold,
    )
    item = await session.get(StockItem, sku, populate_existing=True)
    assert item is not None
    return item


async def move(
    session: AsyncSession,
    *,
    location_id: str,
    kind: str,
    lines: Sequence[MovementLine],
    reason: str,
    reference: str | None,
    author: str,
    default_threshold: int,
) -> bool:
    """Staff's receipt, damage or count at a location; False when `reference` was applied
    before (nothing moves twice). Damage beyond the units there is a 409."""
    exists = await session.execute(
        text("SELECT 1 FROM locations WHERE id = :id"), {"id": location_id}
    )
    if exists.first() is None:
        raise NotFound(f"There is no location {location_id!r}.", location_id=location_id)
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if line.sku in seen:
            raise Problem(
                422,
                f"/body/lines/{i}/sku: SKU {line.sku!r} is listed twice.",
                title="Your request is not valid",
                type="validation",
                errors=[{"pointer": f"/body/lines/{i}/sku", "detail": "listed twice"}],
            )
        seen.add(line.sku)
    key = f"{kind}:{location_id}:ref:{reference}" if reference else f"{kind}:{uuid.uuid4()}"
    command = Adjust(
        location_id, kind, [(li.sku, li.quantity) for li in lines], key, author, note=reason
    )
    try:
        result = await batch.apply(session, [command], default_threshold=default_threshold)
    except InsufficientStock as exc:
        raise InsufficientStockProblem(exc.shortages) from exc
    return bool(result.applied) or result.outcomes[0].changed


_AVAILABILITY = text(
    "SELECT s.sku, i.on_hand, i.reserved, i.low_stock_threshold "
    "FROM unnest(CAST(:skus AS text[])) WITH ORDINALITY AS s(sku, n) "
    "LEFT JOIN stock_items i ON i.sku = s.sku ORDER BY s.n"
)


async def availability(
    session: AsyncSession, skus: Sequence[str], *, default_threshold: int
) -> list[Availability]:
    """Status and available units per SKU, in the order asked, in one query."""
    out = []
    for sku, on_hand, reserved, threshold in await session.execute(
        _AVAILABILITY, {"skus": list(dict.fromkeys(skus))}
    ):
        if on_hand is None:
            out.append(
                Availability(sku=sku, status=StockStatus.out_of_stock, available=0, known=False)
            )
            continue
        available = max(0, on_hand - reserved)
        status = rules.status_of(available, rules.threshold_of(threshold, default_threshold))
        out.append(Availability(sku=sku, status=status, available=available, known=True))
    return out


async def list_movements(
    session: AsyncSession, sku: str, *, limit: int, before_id: int | None
) -> list[MovementRead]:
    rows = await session.execute(
        text(
            "SELECT id, sku, location_id, reason, delta, reserved_delta, order_ref, author, "
            "note, created_at FROM stock_movements WHERE sku = :sku "
            "AND (CAST(:before AS bigint) IS NULL OR id < :before) ORDER BY id DESC LIMIT :limit"
        ),
        {"sku": sku, "before": before_id, "limit": limit},
    )
    return [
        MovementRead(
            id=r[0],
            sku=r[1],
            location_id=r[2],
            kind=r[3],
            delta=r[4],
            reserved_delta=r[5],
            order_ref=r[6],
            author=r[7],
            note=r[8],
            created_at=r[9],
        )
        for r in rows
    ]


_SUBSCRIBE = text(
    "INSERT INTO back_in_stock_subscriptions (sku, customer_id) VALUES (:sku, :customer_id) "
    "ON CONFLICT (sku, customer_id) WHERE notified_at IS NULL DO NOTHING "
    "RETURNING id, sku, customer_id, created_at, notified_at"
)
_WAITING = text(
    "SELECT id, sku, customer_id, created_at, notified_at FROM back_in_stock_subscriptions "
    "WHERE sku = :sku AND customer_id = :customer_id AND notified_at IS NULL"
)


async def subscribe(
    session: AsyncSession, *, sku: str, customer_id: str, default_threshold: int
) -> tuple[SubscriptionRead, bool]:
    """Subscribes the customer to the SKU's return; (subscription, created). Only an
    out-of-stock SKU takes subscriptions. The SKU row is locked (shared), so a restock
    committing meanwhile either sees this subscription or is seen by it: none is missed."""
    row = (
        await session.execute(
            text(
                "SELECT on_hand, reserved, low_stock_threshold FROM stock_items "
                "WHERE sku = :sku FOR SHARE"
            ),
            {"sku": sku},
        )
    ).first()
    if row is None:
        known = await session.execute(text("SELECT 1 FROM products WHERE sku = :sku"), {"sku": sku})
        if known.first() is None:
            raise NotFound(f"There is no product or stock with SKU {sku!r}.", sku=sku)
    else:
        available = max(0, row[0] - row[1])
        if available > 0:
            raise Conflict(
                f"SKU {sku!r} is in stock ({available} available): nothing to wait for.",
                sku=sku,
                available=available,
            )
    created = (await session.execute(_SUBSCRIBE, {"sku": sku, "customer_id": customer_id})).first()
    if created is not None:
        return SubscriptionRead.model_validate(created._mapping), True
    existing = (await session.execute(_WAITING, {"sku": sku, "customer_id": customer_id})).one()
    return SubscriptionRead.model_validate(existing._mapping), False

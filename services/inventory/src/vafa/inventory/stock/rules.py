"""The stock rules, pure (no I/O): which movements an order event makes, what a movement does to
a level, and the StockChanged that announces it.

Both ways of moving stock decide with these, so there is one set of rules:
- `service` (the PUT API, and one order event at a time), with the database deciding
  "known SKU" (the locked row) and "not applied yet" (the unique idempotency key);
- `batch` (the orders consumer), which loads that state for a whole batch into a `Book` and
  applies the events in order in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vafa.events.v1 import inventory_pb2, shop_orders_pb2
from vafa.inventory.stock.schemas import StockStatus

SALE = "sale"
CANCEL = "cancel"
RESTOCK = "restock"

_STATUS_PB = {
    StockStatus.in_stock: inventory_pb2.STOCK_STATUS_IN_STOCK,
    StockStatus.low_stock: inventory_pb2.STOCK_STATUS_LOW_STOCK,
    StockStatus.out_of_stock: inventory_pb2.STOCK_STATUS_OUT_OF_STOCK,
}


@dataclass(frozen=True, slots=True)
class Movement:
    """One ledger row to be. `key` is its business key: a movement applies at most once."""

    key: str
    sku: str
    delta: int
    reason: str
    order_ref: str | None = None
    author: str | None = None


@dataclass(slots=True)
class Level:
    """A known SKU's level, as locked for the transaction."""

    on_hand: int
    low_stock_threshold: int | None = None


def status_of(on_hand: int, threshold: int) -> StockStatus:
    if on_hand <= 0:
        return StockStatus.out_of_stock
    if on_hand <= threshold:
        return StockStatus.low_stock
    return StockStatus.in_stock


def threshold_of(low_stock_threshold: int | None, default: int) -> int:
    return low_stock_threshold if low_stock_threshold is not None else default


def sale_movements(order: shop_orders_pb2.Order) -> list[Movement]:
    """Placed and paid both take the units, once per order line (the key is the line's),
    whichever arrives first. A line without a SKU or without units moves nothing."""
    ref = order.order_ref
    return [
        Movement(f"{SALE}:{ref}:{line.line_id}", line.sku, -line.quantity, SALE, ref)
        for line in order.line_items
        if line.sku and line.quantity > 0
    ]


def cancel_key(sale_key: str) -> str:
    return sale_key.replace(f"{SALE}:", f"{CANCEL}:", 1)


def cancel_movements(order_ref: str, sales: Iterable[Movement]) -> list[Movement]:
    """Returns exactly what the order's sales took (in ledger order), and nothing for lines it
    never took."""
    return [Movement(cancel_key(s.key), s.sku, -s.delta, CANCEL, order_ref) for s in sales]


def restock_movements(
    order: shop_orders_pb2.Order, refund: shop_orders_pb2.Refund
) -> list[Movement]:
    """A refund returns the units of its restock lines, once per refund line."""
    ref = order.order_ref
    return [
        Movement(
            f"{RESTOCK}:{ref}:{refund.refund_id}:{line.line_id}",
            line.sku,
            line.quantity,
            RESTOCK,
            ref,
        )
        for line in refund.lines
        if line.restock and line.sku and line.quantity > 0
    ]


def apply_to(
    level: Level, movement: Movement, *, default_threshold: int
) -> inventory_pb2.StockChanged:
    """Moves `level` by the movement (a sale of units we do not hold goes negative: the truth,
    for staff to correct) and returns the event announcing it."""
    level.on_hand += movement.delta
    status = status_of(level.on_hand, threshold_of(level.low_stock_threshold, default_threshold))
    return inventory_pb2.StockChanged(
        sku=movement.sku,
        on_hand=level.on_hand,
        delta=movement.delta,
        reason=movement.reason,
        order_ref=movement.order_ref or "",
        status=_STATUS_PB[status],
    )


@dataclass(frozen=True, slots=True)
class Applied:
    movement: Movement
    event: inventory_pb2.StockChanged


@dataclass(slots=True)
class Book:
    """A unit of work's stock, in memory: the known SKUs' levels, the movement keys already in
    the ledger, and the sales of the orders it may cancel (in ledger order). `apply` decides a
    movement as the ledger would: an unknown SKU moves nothing, a key already applied moves
    nothing, anything else moves the level once."""

    levels: dict[str, Level]
    default_threshold: int
    applied_keys: set[str] = field(default_factory=set)
    sales: dict[str, list[Movement]] = field(default_factory=dict)

    def apply(self, movement: Movement) -> Applied | None:
        level = self.levels.get(movement.sku)
        if level is None or movement.key in self.applied_keys:
            return None
        self.applied_keys.add(movement.key)
        if movement.reason == SALE and movement.order_ref is not None:
            self.sales.setdefault(movement.order_ref, []).append(movement)
        event = apply_to(level, movement, default_threshold=self.default_threshold)
        return Applied(movement, event)

    def cancellation(self, order_ref: str) -> list[Movement]:
        return cancel_movements(order_ref, self.sales.get(order_ref, ()))

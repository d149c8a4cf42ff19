"""Stock levels, moved only through the append-only movement ledger."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import inventory_pb2, shop_orders_pb2
from vafa.inventory.events import STOCK_TOPIC, outbox
from vafa.inventory.models import StockItem
from vafa.inventory.stock.schemas import StockStatus

_STATUS_PB = {
    StockStatus.in_stock: inventory_pb2.STOCK_STATUS_IN_STOCK,
    StockStatus.low_stock: inventory_pb2.STOCK_STATUS_LOW_STOCK,
    StockStatus.out_of_stock: inventory_pb2.STOCK_STATUS_OUT_OF_STOCK,
}

_INSERT_MOVEMENT = text(
    "INSERT INTO stock_movements (idempotency_key, sku, delta, reason, order_ref, author) "
    "VALUES (:key, :sku, :delta, :reason, :order_ref, :author) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)


def status_of(on_hand: int, threshold: int) -> StockStatus:
    if on_hand <= 0:
        return StockStatus.out_of_stock
    if on_hand <= threshold:
        return StockStatus.low_stock
    return StockStatus.in_stock


def threshold_of(item: StockItem, default: int) -> int:
    return item.low_stock_threshold if item.low_stock_threshold is not None else default


async def get_item(session: AsyncSession, sku: str) -> StockItem | None:
    return await session.get(StockItem, sku)


async def move(
    session: AsyncSession,
    *,
    sku: str,
    delta: int,
    reason: str,
    key: str,
    default_threshold: int,
    order_ref: str | None = None,
    author: str | None = None,
) -> StockItem | None:
    """Applies one movement to a known SKU, once per `key`. Returns the item, or None when the
    SKU is unknown or the movement was already applied."""
    item = (
        await session.execute(select(StockItem).where(StockItem.sku == sku).with_for_update())
    ).scalar_one_or_none()
    if item is None:
        return None
    inserted = await session.execute(
        _INSERT_MOVEMENT,
        {
            "key": key,
            "sku": sku,
            "delta": delta,
            "reason": reason,
            "order_ref": order_ref,
            "author": author,
        },
    )
    if inserted.first() is None:
        return None
    item.on_hand += delta
    await session.flush()
    await _emit(
        session,
        item,
        delta=delta,
        reason=reason,
        order_ref=order_ref,
        default_threshold=default_threshold,
    )
    return item


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
    item = (
        await session.execute(select(StockItem).where(StockItem.sku == sku).with_for_update())
    ).scalar_one_or_none()
    if item is None:
        item = StockItem(sku=sku, on_hand=0, low_stock_threshold=low_stock_threshold)
        session.add(item)
        await session.flush()
    elif low_stock_threshold is not None:
        item.low_stock_threshold = low_stock_threshold
    delta = on_hand - item.on_hand
    await session.execute(
        _INSERT_MOVEMENT,
        {
            "key": f"set:{uuid.uuid4()}",
            "sku": sku,
            "delta": delta,
            "reason": reason,
            "order_ref": None,
            "author": author,
        },
    )
    item.on_hand = on_hand
    await session.flush()
    await _emit(
        session,
        item,
        delta=delta,
        reason=reason,
        order_ref=None,
        default_threshold=default_threshold,
    )
    return item


async def record_sale(
    session: AsyncSession, order: shop_orders_pb2.Order, *, default_threshold: int
) -> None:
    """Placed and paid both take the units, once per order line, whichever arrives first."""
    for line in order.line_items:
        if line.sku and line.quantity > 0:
            await move(
                session,
                sku=line.sku,
                delta=-line.quantity,
                reason="sale",
                key=f"sale:{order.order_ref}:{line.line_id}",
                order_ref=order.order_ref,
                default_threshold=default_threshold,
            )


async def record_cancellation(
    session: AsyncSession, order: shop_orders_pb2.Order, *, default_threshold: int
) -> None:
    """Returns exactly what the order's sales took, and nothing for lines it never took."""
    rows = await session.execute(
        text(
            "SELECT idempotency_key, sku, delta FROM stock_movements "
            "WHERE order_ref = :ref AND reason = 'sale'"
        ),
        {"ref": order.order_ref},
    )
    for key, sku, delta in rows.all():
        await move(
            session,
            sku=sku,
            delta=-delta,
            reason="cancel",
            key=key.replace("sale:", "cancel:", 1),
            order_ref=order.order_ref,
            default_threshold=default_threshold,
        )


async def record_refund(
    session: AsyncSession,
    order: shop_orders_pb2.Order,
    refund: shop_orders_pb2.Refund,
    *,
    default_threshold: int,
) -> None:
    for line in refund.lines:
        if line.restock and line.sku and line.quantity > 0:
            await move(
                session,
                sku=line.sku,
                delta=line.quantity,
                reason="restock",
                key=f"restock:{order.order_ref}:{refund.refund_id}:{line.line_id}",
                order_ref=order.order_ref,
                default_threshold=default_threshold,
            )


async def _emit(
    session: AsyncSession,
    item: StockItem,
    *,
    delta: int,
    reason: str,
    order_ref: str | None,
    default_threshold: int,
) -> None:
    status = status_of(item.on_hand, threshold_of(item, default_threshold))
    await outbox.add(
        session,
        topic=STOCK_TOPIC,
        key=item.sku,
        message=inventory_pb2.StockChanged(
            sku=item.sku,
            on_hand=item.on_hand,
            delta=delta,
            reason=reason,
            order_ref=order_ref or "",
            status=_STATUS_PB[status],
        ),
    )

"""Stock levels, moved only through the append-only movement ledger, one movement at a time.

This is the path of the PUT API (and of an order event applied on its own); the orders consumer
applies whole batches set-based in `batch`. Both decide with `rules`.
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import inventory_pb2
from vafa.inventory.events import STOCK_TOPIC, outbox
from vafa.inventory.models import StockItem
from vafa.inventory.stock import rules
from vafa.inventory.stock.rules import Level, Movement
from vafa.inventory.stock.schemas import StockStatus

_LOCK_ITEM = select(StockItem).where(StockItem.sku == bindparam("sku")).with_for_update()

_INSERT_MOVEMENT = text(
    "INSERT INTO stock_movements (idempotency_key, sku, delta, reason, order_ref, author) "
    "VALUES (:key, :sku, :delta, :reason, :order_ref, :author) "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)


def status_of(on_hand: int, threshold: int) -> StockStatus:
    return rules.status_of(on_hand, threshold)


def threshold_of(item: StockItem, default: int) -> int:
    return rules.threshold_of(item.low_stock_threshold, default)


async def get_item(session: AsyncSession, sku: str) -> StockItem | None:
    return await session.get(StockItem, sku)


async def _lock(session: AsyncSession, sku: str) -> StockItem | None:
    return (await session.execute(_LOCK_ITEM, {"sku": sku})).scalar_one_or_none()


async def _insert(session: AsyncSession, m: Movement) -> bool:
    """Writes the movement; False when its key is already in the ledger."""
    inserted = await session.execute(
        _INSERT_MOVEMENT,
        {
            "key": m.key,
            "sku": m.sku,
            "delta": m.delta,
            "reason": m.reason,
            "order_ref": m.order_ref,
            "author": m.author,
        },
    )
    return inserted.first() is not None


async def _apply(
    session: AsyncSession, item: StockItem, m: Movement, *, default_threshold: int
) -> None:
    level = Level(item.on_hand, item.low_stock_threshold)
    event = rules.apply_to(level, m, default_threshold=default_threshold)
    item.on_hand = level.on_hand
    await session.flush()
    await _emit(session, event)


async def move(
    session: AsyncSession, movement: Movement, *, default_threshold: int
) -> StockItem | None:
    """Applies one movement to a known SKU, once per key. Returns the item, or None when the
    SKU is unknown or the movement was already applied."""
    item = await _lock(session, movement.sku)
    if item is None:
        return None
    if not await _insert(session, movement):
        return None
    await _apply(session, item, movement, default_threshold=default_threshold)
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
    item = await _lock(session, sku)
    if item is None:
        item = StockItem(sku=sku, on_hand=0, low_stock_threshold=low_stock_threshold)
        session.add(item)
        await session.flush()
    elif low_stock_threshold is not None:
        item.low_stock_threshold = low_stock_threshold
    movement = Movement(
        key=f"set:{uuid.uuid4()}",
        sku=sku,
        delta=on_hand - item.on_hand,
        reason=reason,
        author=author,
    )
    await _insert(session, movement)
    await _apply(session, item, movement, default_threshold=default_threshold)
    return item


async def _emit(session: AsyncSession, event: inventory_pb2.StockChanged) -> None:
    await outbox.add(session, topic=STOCK_TOPIC, key=event.sku, message=event)

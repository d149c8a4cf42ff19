"""Order events applied a polled batch at a time, set-based, as one unit of work.

1. Plan: the movements each event asks for (`rules`), and every SKU and key they touch; for
   cancellations, the cancelled orders' sales already in the ledger (one statement).
2. Lock the known SKUs in one `SELECT ... ORDER BY sku FOR UPDATE`: one lock order for every
   writer (the PUT API locks one row), so no deadlock. No known SKU: nothing to do.
3. Load which of the batch's keys are already in the ledger (one statement).
4. Apply the events in log order in memory (`rules.Book`), exactly as one at a time would.
5. Write back: the movements (one multi-row insert), the levels (one UPDATE from unnest), the
   StockChanged events (one `add_many`, each with its causing event's traceparent).

A key inserted concurrently by someone else fails the insert (no ON CONFLICT here): the consumer
rolls back and replays the batch one event at a time, which then sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import shop_orders_pb2
from vafa.inventory.events import STOCK_TOPIC, outbox
from vafa.inventory.models import StockItem
from vafa.inventory.stock import rules
from vafa.inventory.stock.rules import Applied, Book, Level, Movement
from vafa.kit.cloudevents import Envelope
from vafa.kit.outbox import OutboxEvent

_SALES_OF_ORDERS = text(
    "SELECT order_ref, idempotency_key, sku, delta FROM stock_movements "
    "WHERE order_ref = ANY(CAST(:refs AS text[])) AND reason = 'sale' ORDER BY id"
)
_LOCK_ITEMS = text(
    "SELECT sku, on_hand, low_stock_threshold FROM stock_items "
    "WHERE sku = ANY(CAST(:skus AS text[])) ORDER BY sku FOR UPDATE"
)
_EXISTING_KEYS = text(
    "SELECT idempotency_key FROM stock_movements WHERE idempotency_key = ANY(CAST(:keys AS text[]))"
)
# Ids in application order (WITH ORDINALITY), so the ledger reads as the events happened.
_INSERT_MOVEMENTS = text(
    "INSERT INTO stock_movements (idempotency_key, sku, delta, reason, order_ref, author) "
    "SELECT k, s, d, r, o, a FROM unnest("
    "CAST(:keys AS text[]), CAST(:skus AS text[]), CAST(:deltas AS bigint[]), "
    "CAST(:reasons AS text[]), CAST(:refs AS text[]), CAST(:authors AS text[])"
    ") WITH ORDINALITY AS m(k, s, d, r, o, a, n) ORDER BY n"
)
_UPDATE_LEVELS = text(
    "UPDATE stock_items AS i SET on_hand = v.on_hand, updated_at = now() "
    "FROM unnest(CAST(:skus AS text[]), CAST(:levels AS bigint[])) AS v(sku, on_hand) "
    "WHERE i.sku = v.sku"
)


@dataclass(frozen=True, slots=True)
class _Step:
    """One event's part of the plan: its movements, or the order it cancels."""

    envelope: Envelope
    movements: list[Movement]
    cancels: str | None = None


def _plan(envelopes: Sequence[Envelope]) -> list[_Step]:
    steps = []
    for env in envelopes:
        msg = env.message
        if isinstance(msg, shop_orders_pb2.OrderPlaced | shop_orders_pb2.OrderPaid):
            steps.append(_Step(env, rules.sale_movements(msg.order)))
        elif isinstance(msg, shop_orders_pb2.OrderRefunded):
            steps.append(_Step(env, rules.restock_movements(msg.order, msg.refund)))
        elif isinstance(msg, shop_orders_pb2.OrderCancelled):
            steps.append(_Step(env, [], cancels=msg.order.order_ref))
    return steps


async def apply_order_events(
    session: AsyncSession, envelopes: Sequence[Envelope], *, default_threshold: int
) -> list[Applied]:
    """Applies the order events in log order with the rules of `rules`, in a few statements.
    Returns the movements applied."""
    steps = _plan(envelopes)
    planned = [m for step in steps for m in step.movements]
    skus = {m.sku for m in planned}

    # The cancelled orders' sales: those in the ledger, and those this batch may add.
    cancelled = list(dict.fromkeys(step.cancels for step in steps if step.cancels is not None))
    sales: dict[str, list[Movement]] = {}
    if cancelled:
        rows = (await session.execute(_SALES_OF_ORDERS, {"refs": cancelled})).all()
        for ref, key, sku, delta in rows:
            sales.setdefault(ref, []).append(Movement(key, sku, delta, rules.SALE, ref))
            skus.add(sku)
    if not skus:
        return []

    locked = (await session.execute(_LOCK_ITEMS, {"skus": sorted(skus)})).all()
    if not locked:
        return []  # every SKU unknown: nothing moves
    levels = {sku: Level(on_hand, threshold) for sku, on_hand, threshold in locked}

    cancelled_set = set(cancelled)
    keys = {m.key for m in planned if m.sku in levels}
    for m in planned:
        if m.reason == rules.SALE and m.order_ref in cancelled_set and m.sku in levels:
            keys.add(rules.cancel_key(m.key))
    for ref_sales in sales.values():
        keys.update(rules.cancel_key(s.key) for s in ref_sales if s.sku in levels)
    existing: set[str] = set()
    if keys:
        existing = set((await session.execute(_EXISTING_KEYS, {"keys": list(keys)})).scalars())

    book = Book(levels, default_threshold, applied_keys=existing, sales=sales)
    applied: list[Applied] = []
    events: list[OutboxEvent] = []
    for step in steps:
        movements = book.cancellation(step.cancels) if step.cancels is not None else step.movements
        for m in movements:
            done = book.apply(m)
            if done is not None:
                applied.append(done)
                events.append(
                    OutboxEvent(
                        STOCK_TOPIC, m.sku, done.event, traceparent=step.envelope.traceparent
                    )
                )
    if not applied:
        return []

    moved = [a.movement for a in applied]
    await session.execute(
        _INSERT_MOVEMENTS,
        {
            "keys": [m.key for m in moved],
            "skus": [m.sku for m in moved],
            "deltas": [m.delta for m in moved],
            "reasons": [m.reason for m in moved],
            "refs": [m.order_ref for m in moved],
            "authors": [m.author for m in moved],
        },
    )
    changed = list(dict.fromkeys(m.sku for m in moved))
    await session.execute(
        _UPDATE_LEVELS, {"skus": changed, "levels": [levels[sku].on_hand for sku in changed]}
    )
    await outbox.add_many(session, events)
    _expire_loaded(session, set(changed))
    return applied


def _expire_loaded(session: AsyncSession, skus: set[str]) -> None:
    """Levels were written with Core: a StockItem this session had loaded is now stale."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, StockItem) and obj.sku in skus:
            session.expire(obj)

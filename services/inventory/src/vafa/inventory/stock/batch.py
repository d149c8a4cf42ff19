"""Every stock write, as one unit of work over a list of commands (`rules`), set-based: a polled
batch of order events, one reservation request, a staff movement and the expiry sweep all take
this path, in a handful of statements however many commands there are.

1. Plan: the order_refs and SKUs the commands touch. New SKUs a receipt or count brings are
   inserted first (ON CONFLICT DO NOTHING).
2. Lock the reservations (one `INSERT ... ON CONFLICT DO UPDATE ... RETURNING`, in order_ref
   order, which also claims an order seen for the first time as `new`), then load what those
   orders hold and took from the ledger (one grouped statement).
3. Lock the SKUs (one `SELECT ... ORDER BY sku FOR UPDATE`), then read their levels per
   location (a second statement, so the levels are read after the lock, never from before it).
   Every writer locks reservations then SKUs, each in one order, so writers never deadlock.
4. Apply the commands in order in memory (`rules.Book`), exactly as one at a time would. A
   strict command that cannot be met raises before anything is written.
5. Write back in one statement (movements, levels, totals, reservations, requested lines as
   data-modifying CTEs), mark back-in-stock subscriptions notified, and add the events to the
   outbox (one `add_many`, each event with its causing command's traceparent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import inventory_pb2, shop_orders_pb2
from vafa.inventory.events import STOCK_TOPIC, outbox
from vafa.inventory.models import DEFAULT_LOCATION, StockItem
from vafa.inventory.stock import rules
from vafa.inventory.stock.rules import (
    Adjust,
    Applied,
    Book,
    Command,
    Confirm,
    Expire,
    Item,
    Level,
    Order,
    Outcome,
    Release,
    Reserve,
    Restock,
)
from vafa.inventory.stock.schemas import StockStatus
from vafa.kit.cloudevents import Envelope
from vafa.kit.outbox import OutboxEvent

_CREATE_ITEMS = text(
    "INSERT INTO stock_items (sku, on_hand, reserved, status, low_stock_threshold) "
    "SELECT s, 0, 0, 'out_of_stock', t FROM unnest(CAST(:skus AS text[]), "
    "CAST(:thresholds AS int[])) AS n(s, t) ORDER BY s ON CONFLICT (sku) DO NOTHING"
)
# Rows are inserted (and so locked) in the order given: order_ref order.
_CLAIM_ORDERS = text(
    "INSERT INTO reservations (order_ref, state) "
    "SELECT r, 'new' FROM unnest(CAST(:refs AS text[])) AS r "
    "ON CONFLICT (order_ref) DO UPDATE SET order_ref = EXCLUDED.order_ref "
    "RETURNING order_ref, state, expires_at, source, created_at, now()"
)
_ORDER_LEDGER = text(
    "SELECT order_ref, sku, location_id, sum(reserved_delta), "
    "coalesce(sum(delta) FILTER (WHERE reason IN ('sale', 'return')), 0) "
    "FROM stock_movements WHERE order_ref = ANY(CAST(:refs AS text[])) "
    "GROUP BY order_ref, sku, location_id"
)
_LOCK_ITEMS = text(
    "SELECT sku, low_stock_threshold, status FROM stock_items "
    "WHERE sku = ANY(CAST(:skus AS text[])) ORDER BY sku FOR UPDATE"
)
_LEVELS = text(
    "SELECT l.sku, l.location_id, l.on_hand, l.reserved, loc.active FROM stock_levels l "
    "JOIN locations loc ON loc.id = l.location_id WHERE l.sku = ANY(CAST(:skus AS text[])) "
    "ORDER BY l.sku, loc.priority, loc.id"
)
_EXISTING_KEYS = text(
    "SELECT idempotency_key FROM stock_movements WHERE idempotency_key = ANY(CAST(:keys AS text[]))"
)
# Ids in application order (WITH ORDINALITY), so the ledger reads as the commands happened.
_WRITE = text(
    """
WITH m AS (
  INSERT INTO stock_movements
    (idempotency_key, sku, location_id, delta, reserved_delta, reason, order_ref, author, note)
  SELECT k, s, l, d, rd, r, o, a, nt FROM unnest(
    CAST(:m_keys AS text[]), CAST(:m_skus AS text[]), CAST(:m_locs AS text[]),
    CAST(:m_deltas AS bigint[]), CAST(:m_rdeltas AS bigint[]), CAST(:m_kinds AS text[]),
    CAST(:m_refs AS text[]), CAST(:m_authors AS text[]), CAST(:m_notes AS text[])
  ) WITH ORDINALITY AS x(k, s, l, d, rd, r, o, a, nt, n) ORDER BY n
  RETURNING 1
), lv AS (
  INSERT INTO stock_levels (sku, location_id, on_hand, reserved)
  SELECT * FROM unnest(CAST(:l_skus AS text[]), CAST(:l_locs AS text[]),
    CAST(:l_on_hand AS bigint[]), CAST(:l_reserved AS bigint[]))
  ON CONFLICT (sku, location_id)
  DO UPDATE SET on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved
  RETURNING 1
), it AS (
  UPDATE stock_items AS i
  SET on_hand = v.on_hand, reserved = v.reserved, status = v.status,
      low_stock_threshold = v.threshold, updated_at = now()
  FROM unnest(CAST(:i_skus AS text[]), CAST(:i_on_hand AS bigint[]),
    CAST(:i_reserved AS bigint[]), CAST(:i_status AS text[]), CAST(:i_thresholds AS int[]))
    AS v(sku, on_hand, reserved, status, threshold)
  WHERE i.sku = v.sku
  RETURNING 1
), rs AS (
  UPDATE reservations AS r
  SET state = v.state, expires_at = v.expires_at, source = v.source, updated_at = now()
  FROM unnest(CAST(:r_refs AS text[]), CAST(:r_states AS text[]),
    CAST(:r_expires AS timestamptz[]), CAST(:r_sources AS text[]))
    AS v(order_ref, state, expires_at, source)
  WHERE r.order_ref = v.order_ref
  RETURNING 1
), dr AS (
  DELETE FROM reservations WHERE order_ref = ANY(CAST(:drop_refs AS text[])) AND state = 'new'
  RETURNING 1
), rl AS (
  INSERT INTO reservation_lines (order_ref, sku, requested, allocated)
  SELECT * FROM unnest(CAST(:rl_refs AS text[]), CAST(:rl_skus AS text[]),
    CAST(:rl_requested AS bigint[]), CAST(:rl_allocated AS bigint[]))
  ON CONFLICT (order_ref, sku) DO NOTHING
  RETURNING 1
)
SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM lv), (SELECT count(*) FROM it),
  (SELECT count(*) FROM rs), (SELECT count(*) FROM rl)
"""
)
_NOTIFY_SUBSCRIBERS = text(
    "UPDATE back_in_stock_subscriptions SET notified_at = now() "
    "WHERE sku = ANY(CAST(:skus AS text[])) AND notified_at IS NULL "
    "RETURNING sku, customer_id"
)


@dataclass(slots=True)
class Result:
    outcomes: list[Outcome]
    applied: list[Applied]
    book: Book


def _refs_and_skus(commands: Sequence[Command]) -> tuple[list[str], list[str], set[str]]:
    claim: set[str] = set()
    ledger: set[str] = set()
    skus: set[str] = set()
    for c in commands:
        if isinstance(c, Adjust):
            skus.update(sku for sku, _ in c.lines)
        elif isinstance(c, Restock):
            ledger.add(c.order_ref)
            skus.update(sku for _, sku, _ in c.lines if sku)
        else:
            claim.add(c.order_ref)
            if isinstance(c, Reserve | Confirm):
                skus.update(sku for sku, _ in c.lines if sku)
    return sorted(claim), sorted(ledger | claim), skus


def _keys(commands: Sequence[Command]) -> list[str]:
    """The caller-keyed movements (refund lines, staff movements) that may already be in the
    ledger; reservation movements are once-only by the reservation's state."""
    keys = []
    for c in commands:
        if isinstance(c, Restock):
            keys += [f"return:{c.order_ref}:{c.refund_id}:{lid}" for lid, _, _ in c.lines]
        elif isinstance(c, Adjust):
            keys += [f"{c.key}:{i}" for i in range(len(c.lines))]
    return keys


async def apply(
    session: AsyncSession,
    commands: Sequence[Command],
    *,
    default_threshold: int,
    default_location: str = DEFAULT_LOCATION,
    traceparents: Sequence[str | None] | None = None,
    refuse_softly: bool = False,
) -> Result:
    """Applies the commands in order as one unit of work (the caller commits). Raises
    `rules.InsufficientStock` / `rules.StateConflict` from a strict command, having written
    nothing."""
    claim, ledger_refs, skus = _refs_and_skus(commands)

    new_skus = {
        sku: c.threshold
        for c in commands
        if isinstance(c, Adjust) and c.kind in (rules.RECEIPT, rules.CORRECTION)
        for sku, _ in c.lines
    }
    if new_skus:
        ordered = sorted(new_skus)
        await session.execute(
            _CREATE_ITEMS, {"skus": ordered, "thresholds": [new_skus[s] for s in ordered]}
        )

    orders: dict[str, Order] = {}
    if claim:
        for ref, state, expires_at, source, created_at, now in await session.execute(
            _CLAIM_ORDERS, {"refs": claim}
        ):
            # now(): the transaction's time, which the write stamps as updated_at.
            orders[ref] = Order(ref, state, expires_at, source, created_at=created_at, now=now)
    ledger_refs = [r for r in ledger_refs if r not in orders or orders[r].state != rules.NEW]
    sold_by: dict[str, Order] = {}
    if ledger_refs:
        for ref, sku, loc, held, moved in await session.execute(
            _ORDER_LEDGER, {"refs": ledger_refs}
        ):
            order = orders.get(ref) or sold_by.setdefault(ref, Order(ref, rules.CONFIRMED))
            if held:
                order.held[(sku, loc)] = int(held)
            if moved:
                order.net_sold[(sku, loc)] = -int(moved)
            skus.add(sku)
    for ref, order in sold_by.items():
        orders.setdefault(ref, order)

    items: dict[str, Item] = {}
    if skus:
        ordered = sorted(skus)
        for sku, threshold, status in await session.execute(_LOCK_ITEMS, {"skus": ordered}):
            items[sku] = Item(sku, threshold, StockStatus(status))
        if items:
            for sku, loc, on_hand, reserved, active in await session.execute(
                _LEVELS, {"skus": list(items)}
            ):
                items[sku].levels[loc] = Level(on_hand, reserved)
                if active:
                    items[sku].order.append(loc)

    keys = _keys(commands)
    existing: set[str] = set()
    if keys:
        existing = set((await session.execute(_EXISTING_KEYS, {"keys": keys})).scalars())

    book = Book(
        items,
        orders,
        default_threshold,
        default_location,
        applied_keys=existing,
        refuse_softly=refuse_softly,
    )
    outcomes = []
    for i, command in enumerate(commands):
        book.cause = i
        outcomes.append(book.apply(command))

    await _write(session, book, claim)
    await _publish(session, book, traceparents)
    _expire_loaded(session, book.touched_items)
    return Result(outcomes, book.applied, book)


async def _write(session: AsyncSession, book: Book, claimed: list[str]) -> None:
    moved = [a.movement for a in book.applied]
    levels = sorted(book.touched_levels)
    item_skus = sorted(book.touched_items)
    dirty = [o for o in book.orders.values() if o.dirty]
    # A claim that no command moved on (a strict command refused, or nothing applied) is
    # rolled back by the caller; one that stays `new` here is an order event's tombstone.
    lines = [(o.order_ref, sku, req, alloc) for o in dirty for sku, (req, alloc) in o.lines.items()]
    # Claims of refused reservations: nothing of them may remain.
    drop = sorted(r for r in book.refused_claims if book.orders[r].state == rules.NEW)
    if not (moved or levels or item_skus or dirty or drop):
        return
    items = book.items
    await session.execute(
        _WRITE,
        {
            "m_keys": [m.key for m in moved],
            "m_skus": [m.sku for m in moved],
            "m_locs": [m.location_id for m in moved],
            "m_deltas": [m.delta for m in moved],
            "m_rdeltas": [m.reserved_delta for m in moved],
            "m_kinds": [m.kind for m in moved],
            "m_refs": [m.order_ref for m in moved],
            "m_authors": [m.author for m in moved],
            "m_notes": [m.note for m in moved],
            "l_skus": [s for s, _ in levels],
            "l_locs": [loc for _, loc in levels],
            "l_on_hand": [items[s].levels[loc].on_hand for s, loc in levels],
            "l_reserved": [items[s].levels[loc].reserved for s, loc in levels],
            "i_skus": item_skus,
            "i_on_hand": [items[s].on_hand for s in item_skus],
            "i_reserved": [items[s].reserved for s in item_skus],
            "i_status": [items[s].status.value for s in item_skus],
            "i_thresholds": [items[s].threshold for s in item_skus],
            "r_refs": [o.order_ref for o in dirty],
            "r_states": [o.state for o in dirty],
            "r_expires": [o.expires_at for o in dirty],
            "r_sources": [o.source for o in dirty],
            "drop_refs": drop,
            "rl_refs": [r for r, _, _, _ in lines],
            "rl_skus": [s for _, s, _, _ in lines],
            "rl_requested": [q for _, _, q, _ in lines],
            "rl_allocated": [a for _, _, _, a in lines],
        },
    )


async def _publish(
    session: AsyncSession, book: Book, traceparents: Sequence[str | None] | None
) -> None:
    def trace(cause: int) -> str | None:
        return traceparents[cause] if traceparents else None

    events = [
        OutboxEvent(STOCK_TOPIC, sku, msg, traceparent=trace(cause))
        for cause, sku, msg in book.events
    ]
    # Back in stock at the end of the unit of work (not a SKU that went out again meanwhile).
    back = {
        sku: v
        for sku, v in book.back_in_stock.items()
        if book.items[sku].status is not StockStatus.out_of_stock
    }
    if back:
        subscribers: dict[str, list[str]] = {}
        for sku, customer_id in await session.execute(_NOTIFY_SUBSCRIBERS, {"skus": sorted(back)}):
            subscribers.setdefault(sku, []).append(customer_id)
        for sku, customer_ids in sorted(subscribers.items()):
            cause, available = back[sku]
            events.append(
                OutboxEvent(
                    STOCK_TOPIC,
                    sku,
                    inventory_pb2.BackInStock(
                        sku=sku, customer_ids=sorted(customer_ids), available=available
                    ),
                    traceparent=trace(cause),
                )
            )
    await outbox.add_many(session, events)


def _expire_loaded(session: AsyncSession, skus: set[str]) -> None:
    """Levels were written with Core: a StockItem this session had loaded is now stale."""
    for obj in list(session.identity_map.values()):
        # The identity, not `obj.sku`: an expired object would load it (I/O outside a greenlet).
        if isinstance(obj, StockItem) and inspect(obj).identity[0] in skus:
            session.expire(obj)


# --- order events ---------------------------------------------------------------------------


def order_commands(envelopes: Sequence[Envelope], *, hold_seconds: int) -> list[Command]:
    """The commands the shop's order events ask for, in log order (one per event; an event
    without an order_ref cannot be keyed and moves nothing)."""
    out: list[Command] = []
    for env in envelopes:
        msg = env.message
        order = getattr(msg, "order", None)
        if order is None or not order.order_ref:
            continue
        ref = order.order_ref
        lines = [(li.sku, li.quantity) for li in order.line_items]
        # The ledger names the very event that moved the stock.
        author = f"event:{env.type.rsplit('.', 1)[-1]}:{env.id}"
        if isinstance(msg, shop_orders_pb2.OrderPlaced):
            # The hold runs from when the order was placed, when the shop says so.
            placed = (
                order.placed_at.ToDatetime(tzinfo=UTC)
                if order.HasField("placed_at")
                else env.time or datetime.now(UTC)
            )
            out.append(
                Reserve(
                    ref,
                    lines,
                    placed + timedelta(seconds=hold_seconds),
                    note="order_placed",
                    author=author,
                )
            )
        elif isinstance(msg, shop_orders_pb2.OrderPaid):
            out.append(Confirm(ref, lines, note="order_paid", author=author))
        elif isinstance(msg, shop_orders_pb2.OrderCancelled):
            out.append(Release(ref, note="order_cancelled", author=author))
        elif isinstance(msg, shop_orders_pb2.OrderRefunded):
            restock = [(li.line_id, li.sku, li.quantity) for li in msg.refund.lines if li.restock]
            out.append(Restock(ref, msg.refund.refund_id, restock, author=author))
    return out


async def apply_order_events(
    session: AsyncSession,
    envelopes: Sequence[Envelope],
    *,
    default_threshold: int,
    hold_seconds: int = 900,
) -> list[Applied]:
    """Applies shop order events in log order (the worker's batch handler). Returns the
    movements applied."""
    usable = [e for e in envelopes if getattr(getattr(e.message, "order", None), "order_ref", "")]
    commands = order_commands(usable, hold_seconds=hold_seconds)
    if not commands:
        return []
    result = await apply(
        session,
        commands,
        default_threshold=default_threshold,
        traceparents=[e.traceparent for e in usable],
    )
    return result.applied


async def expire_holds(session: AsyncSession, *, default_threshold: int, limit: int = 500) -> int:
    """Releases up to `limit` holds past their expiry; returns how many."""
    refs = list(
        (
            await session.execute(
                text(
                    "SELECT order_ref FROM reservations WHERE state = 'held' "
                    "AND expires_at <= now() ORDER BY expires_at LIMIT :limit"
                ),
                {"limit": limit},
            )
        ).scalars()
    )
    if not refs:
        return 0
    now = datetime.now(UTC)
    result = await apply(
        session, [Expire(ref, now) for ref in refs], default_threshold=default_threshold
    )
    return sum(1 for o in result.outcomes if o.changed)


__all__ = ["Release", "apply", "apply_order_events", "expire_holds", "order_commands"]

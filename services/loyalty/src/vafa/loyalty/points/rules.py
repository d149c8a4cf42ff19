"""Reading the events that move points, with no I/O: `read_purchase` turns a
`PurchaseAttributed` into a checked `Purchase` (or raises, so the consumer dead-letters it),
and `read_interaction` an `InteractionRecorded`. What they earn is the earning rules' business
(rules/engine.py); how they move the ledger is ledger/book.py's.

Business keys (one entry each, so replays have no second effect):
- PAID: `earn:order:<order_ref>` (the order's lot), `earn:first:<customer_id>` (the
  first-purchase bonus, a lot of its own on the same order);
- CANCELLED: `reverse:cancel:<order_ref>`; REFUNDED: `reverse:refund:<order_ref>:<refund_id>`;
- FULFILLED: unlocks the order's pending lots, `unlock:<key of the lot's grant>`;
- InteractionRecorded: `earn:interaction:<entry_id>`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, localcontext
from enum import Enum

import structlog

from vafa.events.v1 import profile_pb2, shop_orders_pb2
from vafa.kit.money import MoneyError, to_major
from vafa.loyalty.rules.engine import Line

log = structlog.get_logger(__name__)

EARN_REASON = "order"
FIRST_PURCHASE_REASON = "first_purchase"
INTERACTION_REASON = "interaction"
BIRTHDAY_REASON = "birthday"
CANCEL_REASON = "order_cancelled"
REFUND_REASON = "order_refunded"
UNLOCK_REASON = "order_fulfilled"
ADJUST_EVENT_REASON = "adjustment"

_warned_currencies: set[str] = set()


def points_for(amount_minor: int, currency: str, *, rates: Mapping[str, Decimal]) -> int:
    """floor(major amount × rate), in Decimal from the integer minor units: 40495 USD at 1 -> 404.
    A currency without a rate earns 0 (warned once per process); a negative amount earns 0."""
    code = currency.upper()
    rate = rates.get(code)
    if rate is None:
        warn_no_rate(code)
        return 0
    if amount_minor <= 0:
        return 0
    try:
        major = to_major(amount_minor, code)
    except MoneyError:
        return 0
    with localcontext() as ctx:
        ctx.prec = 60  # int64 minor units times any sane rate, exactly
        return int((major * rate).to_integral_value(rounding=ROUND_FLOOR))


def warn_no_rate(code: str) -> None:
    if code not in _warned_currencies:
        _warned_currencies.add(code)
        log.warning("no_points_rate_for_currency", currency=code)


class Action(Enum):
    PLACED = "placed"
    EARN = "earn"
    CANCEL = "cancel"
    REFUND = "refund"
    FULFILLED = "fulfilled"


@dataclass(frozen=True, slots=True)
class Purchase:
    """One purchase event, read and checked: what it asks of the ledger."""

    customer_id: uuid.UUID
    action: Action
    order_ref: str = ""
    currency: str = ""
    total: int = 0  # the order's total, minor units
    lines: tuple[Line, ...] = ()
    refund_id: str = ""
    refunded: int = 0  # REFUND: the refunded amount, minor units
    # REFUND: line_id -> refunded amount of that line (empty: spread over the order)
    refund_lines: Mapping[str, int] = field(default_factory=dict)
    # When it happened (the event's time): which rule versions score it, cap periods, expiry.
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def key(self) -> str | None:
        """The idempotency key of the main entry it would append (None: none)."""
        if self.action is Action.EARN:
            return f"earn:order:{self.order_ref}"
        if self.action is Action.CANCEL:
            return f"reverse:cancel:{self.order_ref}"
        if self.action is Action.REFUND:
            return f"reverse:refund:{self.order_ref}:{self.refund_id}"
        return None

    @property
    def reverses(self) -> bool:
        return self.action is Action.CANCEL or self.action is Action.REFUND


def _order_total(order: shop_orders_pb2.Order) -> tuple[int, str]:
    return order.total.amount_minor, (order.total.currency or order.currency)


def _lines(order: shop_orders_pb2.Order) -> tuple[Line, ...]:
    return tuple(
        Line(
            line_id=li.line_id,
            sku=li.sku,
            vendor=li.vendor,
            quantity=li.quantity,
            amount_minor=li.total.amount_minor or li.unit_price.amount_minor * li.quantity,
        )
        for li in order.line_items
        if li.line_id
    )


def read_purchase(
    purchase: profile_pb2.PurchaseAttributed, *, at: datetime | None = None
) -> Purchase:
    # A broken event raises, so the consumer dead-letters it rather than guessing: keys built
    # from an empty order_ref or refund_id would make different orders or refunds one.
    customer_id = uuid.UUID(purchase.customer_id)
    order = purchase.order
    if not order.order_ref:
        raise ValueError("PurchaseAttributed without an order_ref")
    at = at or datetime.now(UTC)
    total, currency = _order_total(order)
    base = {
        "customer_id": customer_id,
        "order_ref": order.order_ref,
        "currency": currency.upper(),
        "total": total,
        "at": at,
    }
    kind = purchase.kind
    if kind == profile_pb2.PURCHASE_KIND_PAID:
        return Purchase(action=Action.EARN, lines=_lines(order), **base)
    if kind == profile_pb2.PURCHASE_KIND_CANCELLED:
        return Purchase(action=Action.CANCEL, **base)
    if kind == profile_pb2.PURCHASE_KIND_FULFILLED:
        return Purchase(action=Action.FULFILLED, **base)
    if kind == profile_pb2.PURCHASE_KIND_REFUNDED:
        refund = purchase.refund
        if not refund.refund_id:
            raise ValueError(f"refund of {order.order_ref!r} without a refund_id")
        refunded = refund.amount.amount_minor or sum(li.amount.amount_minor for li in refund.lines)
        refund_currency = refund.amount.currency or currency
        if refund_currency.upper() != currency.upper():
            raise ValueError(
                f"refund {refund.refund_id!r} of {order.order_ref!r} is in {refund_currency}, "
                f"the order in {currency}"
            )
        per_line: dict[str, int] = {}
        for li in refund.lines:
            if li.line_id:
                per_line[li.line_id] = per_line.get(li.line_id, 0) + li.amount.amount_minor
        return Purchase(
            action=Action.REFUND,
            refund_id=refund.refund_id,
            refunded=refunded,
            refund_lines=per_line,
            **base,
        )
    # Placed, not paid yet: earns nothing, but the customer is known from now on.
    return Purchase(action=Action.PLACED, **base)


def refund_wanted(p: Purchase, lines: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """What a refund takes back per line, given line_id -> (points earned, line amount):
    floor(points × refunded amount of the line / line amount); the order-level line '' (and
    every line, when the refund names none) by the refunded share of the order total."""
    wanted: dict[str, int] = {}
    refunded = max(p.refunded, 0)
    for line_id, (points, amount) in lines.items():
        if p.refund_lines and line_id and line_id in p.refund_lines:
            part, whole = max(p.refund_lines[line_id], 0), amount
        elif p.refund_lines and line_id:
            continue
        else:
            part, whole = refunded, p.total
        wanted[line_id] = points * part // whole if whole > 0 else 0
    return wanted


@dataclass(frozen=True, slots=True)
class InteractionEvent:
    customer_id: uuid.UUID
    entry_id: str
    kind: str
    direction: str
    at: datetime

    @property
    def key(self) -> str:
        return f"earn:interaction:{self.entry_id}"


def read_interaction(msg: profile_pb2.InteractionRecorded, *, at: datetime) -> InteractionEvent:
    if not msg.entry_id:
        raise ValueError("InteractionRecorded without an entry_id")
    occurred = msg.occurred_at.ToDatetime(tzinfo=UTC) if msg.HasField("occurred_at") else at
    return InteractionEvent(
        customer_id=uuid.UUID(msg.customer_id),
        entry_id=msg.entry_id,
        kind=msg.kind,
        direction=msg.direction,
        at=occurred,
    )

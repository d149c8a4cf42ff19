"""The ledger's rules, with no I/O: what an event or an adjustment appends, given the state it
finds. Both write paths use them — the worker's batches (many events, one unit of work) and the
single writes (an HTTP adjustment, one event) — so there is one set of rules:

- `read_purchase` turns a `PurchaseAttributed` into a checked `Purchase` (or raises, so the
  consumer dead-letters it);
- a `Ledger` holds the state the writes need (the locked accounts' balances, what the orders
  being reversed have earned and still have, the idempotency keys already used) and applies
  purchases and adjustments to it in order, in memory, returning the entries to append.

Rules (the README's table):
- PAID earns floor(major total × rate) once per order; PLACED earns nothing (opens the account).
- CANCELLED takes back everything the order still has earned (earned minus earlier reversals).
- REFUNDED takes back floor(earned × refunded / total), never more than the order still has.
- A reversal never takes a balance below zero: it takes the balance only and records that capped
  amount, possibly 0, so its key is claimed and a replay can never take points twice.
- Every entry has a business key; a key already used appends nothing and moves nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext
from enum import Enum

import structlog

from vafa.events.v1 import profile_pb2, shop_orders_pb2
from vafa.kit.errors import Conflict
from vafa.kit.money import MoneyError, to_major
from vafa.loyalty.models import EntryKind

log = structlog.get_logger(__name__)

EARN_REASON = "order"
CANCEL_REASON = "order_cancelled"
REFUND_REASON = "order_refunded"
ADJUST_EVENT_REASON = "adjustment"

_warned_currencies: set[str] = set()


# --- points from money --------------------------------------------------------------------


def points_for(amount_minor: int, currency: str, *, rates: Mapping[str, Decimal]) -> int:
    """floor(major amount × rate), in Decimal from the integer minor units: 40495 USD at 1 -> 404.
    A currency without a rate earns 0 (warned once per process); a negative amount earns 0."""
    code = currency.upper()
    rate = rates.get(code)
    if rate is None:
        if code not in _warned_currencies:
            _warned_currencies.add(code)
            log.warning("no_points_rate_for_currency", currency=code)
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


# --- what a purchase asks of the ledger ---------------------------------------------------


class Action(Enum):
    PLACED = "placed"
    EARN = "earn"
    CANCEL = "cancel"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class Purchase:
    """One purchase event, read and checked: what it asks of the ledger."""

    customer_id: uuid.UUID
    action: Action
    order_ref: str = ""
    points: int = 0  # EARN: what the order's total earns
    refunded: int = 0  # REFUND: the refunded amount, minor units
    total: int = 0  # REFUND: the order's total, minor units
    refund_id: str = ""

    @property
    def key(self) -> str | None:
        """The idempotency key of the entry it would append (None: it appends nothing)."""
        if self.action is Action.EARN:
            return f"earn:order:{self.order_ref}" if self.points > 0 else None
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


def placed(customer_id: uuid.UUID) -> Purchase:
    return Purchase(customer_id, Action.PLACED)


def earn(
    customer_id: uuid.UUID, order: shop_orders_pb2.Order, *, rates: Mapping[str, Decimal]
) -> Purchase:
    """A paid order earns points on its total, once per order."""
    amount, currency = _order_total(order)
    points = points_for(amount, currency, rates=rates)
    return Purchase(customer_id, Action.EARN, order.order_ref, points=points)


def cancel(customer_id: uuid.UUID, order: shop_orders_pb2.Order) -> Purchase:
    """A cancelled order gives back everything it still has earned."""
    return Purchase(customer_id, Action.CANCEL, order.order_ref)


def refund(
    customer_id: uuid.UUID, order: shop_orders_pb2.Order, refund: shop_orders_pb2.Refund
) -> Purchase:
    """A refund gives back floor(earned × refunded / total), and never more than the order
    still has earned, so refunds together never take back more than it earned."""
    total, currency = _order_total(order)
    refunded = refund.amount.amount_minor or sum(line.amount.amount_minor for line in refund.lines)
    refund_currency = refund.amount.currency or currency
    if refund_currency.upper() != currency.upper():
        raise ValueError(
            f"refund {refund.refund_id!r} of {order.order_ref!r} is in {refund_currency}, "
            f"the order in {currency}"
        )
    return Purchase(
        customer_id,
        Action.REFUND,
        order.order_ref,
        refunded=refunded,
        total=total,
        refund_id=refund.refund_id,
    )


def read_purchase(
    purchase: profile_pb2.PurchaseAttributed, *, rates: Mapping[str, Decimal]
) -> Purchase:
    # A broken event raises, so the consumer dead-letters it rather than guessing: keys built
    # from an empty order_ref or refund_id would make different orders or refunds one.
    customer_id = uuid.UUID(purchase.customer_id)
    if not purchase.order.order_ref:
        raise ValueError("PurchaseAttributed without an order_ref")
    kind = purchase.kind
    if kind == profile_pb2.PURCHASE_KIND_REFUNDED and not purchase.refund.refund_id:
        raise ValueError(f"refund of {purchase.order.order_ref!r} without a refund_id")
    if kind == profile_pb2.PURCHASE_KIND_PAID:
        return earn(customer_id, purchase.order, rates=rates)
    if kind == profile_pb2.PURCHASE_KIND_CANCELLED:
        return cancel(customer_id, purchase.order)
    if kind == profile_pb2.PURCHASE_KIND_REFUNDED:
        return refund(customer_id, purchase.order, purchase.refund)
    # Placed, not paid yet: earns nothing, but the customer is known from now on.
    return placed(customer_id)


# --- the state, and the entries it leads to -----------------------------------------------


class InsufficientBalance(Conflict):
    def __init__(self, *, balance: int, points: int) -> None:
        super().__init__(
            f"The balance is {balance} points; taking {-points} would make it negative.",
            balance=balance,
            points=points,
        )


@dataclass(slots=True)
class OrderPoints:
    """What an order has earned, and what of that has not been reversed yet (`net`)."""

    earned: int = 0
    net: int = 0


@dataclass(frozen=True, slots=True)
class Append:
    """An entry decided on, to be written: `balance` is the account's balance after it."""

    customer_id: uuid.UUID
    delta: int
    kind: EntryKind
    reason: str
    key: str
    balance: int
    order_ref: str | None = None
    author: str | None = None
    # The reason the published event gives (an adjustment's entry keeps the staff's words).
    event_reason: str = ""


class Ledger:
    """The state a unit of work needs, in memory, changed by each entry as it is decided:
    - `balances`: the locked accounts (customer -> balance);
    - `orders`: (customer, order_ref) -> OrderPoints for every order the work reverses;
    - `used_keys`: the idempotency keys already taken among those the work may use.
    Apply events in log order; `appended` lists the entries to write, in that order."""

    __slots__ = ("appended", "balances", "orders", "used_keys")

    def __init__(
        self,
        balances: dict[uuid.UUID, int],
        orders: dict[tuple[uuid.UUID, str], OrderPoints] | None = None,
        used_keys: set[str] | None = None,
    ) -> None:
        self.balances = balances
        self.orders = orders if orders is not None else {}
        self.used_keys = used_keys if used_keys is not None else set()
        self.appended: list[Append] = []

    def apply(self, p: Purchase) -> Append | None:
        """The entry a purchase appends, or None (placed, earned nothing, or a key used)."""
        key = p.key
        if key is None or key in self.used_keys:
            return None
        if p.action is Action.EARN:
            return self._append(
                p.customer_id,
                delta=p.points,
                kind=EntryKind.earn,
                reason=EARN_REASON,
                key=key,
                order_ref=p.order_ref,
            )
        order = self.orders[(p.customer_id, p.order_ref)]
        if p.action is Action.CANCEL:
            wanted = max(order.net, 0)
            reason = CANCEL_REASON
        else:
            proportional = order.earned * max(p.refunded, 0) // p.total if p.total > 0 else 0
            wanted = max(0, min(proportional, order.net))
            reason = REFUND_REASON
        balance = self.balances[p.customer_id]
        taken = max(0, min(wanted, balance))  # never below zero: capped, and recorded so
        if taken < wanted:
            log.info(
                "reversal_capped_at_balance",
                customer_id=str(p.customer_id),
                order_ref=p.order_ref,
                wanted=wanted,
                taken=taken,
            )
        return self._append(
            p.customer_id,
            delta=-taken,
            kind=EntryKind.reverse,
            reason=reason,
            key=key,
            order_ref=p.order_ref,
        )

    def adjust(
        self, customer_id: uuid.UUID, *, points: int, reason: str, key: str, author: str
    ) -> Append:
        """A manual adjustment of a new key; refuses a result below zero."""
        balance = self.balances[customer_id]
        if balance + points < 0:
            raise InsufficientBalance(balance=balance, points=points)
        entry = self._append(
            customer_id,
            delta=points,
            kind=EntryKind.adjust,
            reason=reason,
            key=key,
            author=author,
            event_reason=ADJUST_EVENT_REASON,
        )
        assert entry is not None
        return entry

    def _append(
        self,
        customer_id: uuid.UUID,
        *,
        delta: int,
        kind: EntryKind,
        reason: str,
        key: str,
        order_ref: str | None = None,
        author: str | None = None,
        event_reason: str | None = None,
    ) -> Append | None:
        if key in self.used_keys:
            return None
        balance = self.balances[customer_id] + delta
        if balance < 0:  # the rules above never get here; the database's CHECK would refuse it
            raise AssertionError(f"{key} would take {customer_id} below zero")
        self.used_keys.add(key)
        self.balances[customer_id] = balance
        if order_ref is not None:
            order = self.orders.get((customer_id, order_ref))
            if order is not None:
                order.net += delta
                if kind is EntryKind.earn:
                    order.earned += delta
        entry = Append(
            customer_id=customer_id,
            delta=delta,
            kind=kind,
            reason=reason,
            key=key,
            balance=balance,
            order_ref=order_ref,
            author=author,
            event_reason=event_reason or reason,
        )
        self.appended.append(entry)
        return entry

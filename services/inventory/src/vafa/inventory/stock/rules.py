"""The stock rules, pure (no I/O): what each command does to the locked stock and to an order's
reservation, which ledger movements it makes, and the events that announce them.

Every stock write (order events a batch at a time, the reservation API, staff movements, the
expiry sweep) is a list of commands applied to a `Book` by `batch.apply`, so there is one set
of rules. The `Book` holds the unit of work's locked SKUs (their levels per location) and the
reservations it touches, and decides in memory, command by command, exactly as one command at a
time would.

Stock never goes below zero: a hold takes at most the available units, from the locations in
priority order (splitting a line when one is short); what an order event asks beyond that is a
backorder (`ReservationShort`); the API refuses instead (`InsufficientStock`, 409).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from google.protobuf.message import Message

from vafa.events.v1 import inventory_pb2
from vafa.inventory.stock.schemas import StockStatus

# Movement kinds (stock_movements.reason).
RECEIPT = "receipt"
SALE = "sale"
RETURN = "return"
CORRECTION = "correction"
DAMAGE = "damage"
RESERVE = "reserve"
RELEASE = "release"

# Reservation states.
NEW = "new"
HELD = "held"
CONFIRMED = "confirmed"
RELEASED = "released"
EXPIRED = "expired"

STATUS_PB = {
    StockStatus.in_stock: inventory_pb2.STOCK_STATUS_IN_STOCK,
    StockStatus.low_stock: inventory_pb2.STOCK_STATUS_LOW_STOCK,
    StockStatus.out_of_stock: inventory_pb2.STOCK_STATUS_OUT_OF_STOCK,
}
_RANK = {StockStatus.in_stock: 0, StockStatus.low_stock: 1, StockStatus.out_of_stock: 2}


def status_of(available: int, threshold: int) -> StockStatus:
    if available <= 0:
        return StockStatus.out_of_stock
    if available <= threshold:
        return StockStatus.low_stock
    return StockStatus.in_stock


def threshold_of(low_stock_threshold: int | None, default: int) -> int:
    return low_stock_threshold if low_stock_threshold is not None else default


# --- state ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Level:
    """One SKU at one location."""

    on_hand: int = 0
    reserved: int = 0


@dataclass(slots=True)
class Item:
    """A locked SKU: its levels per location and the status last announced."""

    sku: str
    threshold: int | None
    status: StockStatus
    levels: dict[str, Level] = field(default_factory=dict)
    # Allocation order: active locations holding the SKU, by (priority, id).
    order: list[str] = field(default_factory=list)

    @property
    def on_hand(self) -> int:
        return sum(lv.on_hand for lv in self.levels.values())

    @property
    def reserved(self) -> int:
        return sum(lv.reserved for lv in self.levels.values())

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.reserved)

    @property
    def allocatable(self) -> int:
        """Available units a hold can take: at the active locations only."""
        return sum(self.available_at(loc) for loc in self.order)

    def available_at(self, location: str) -> int:
        lv = self.levels.get(location)
        return max(0, lv.on_hand - lv.reserved) if lv else 0


@dataclass(slots=True)
class Order:
    """A reservation as the unit of work sees it. `held`/`net_sold` come from the ledger: per
    (sku, location), the units the order reserves and the units it took and did not return."""

    order_ref: str
    state: str
    expires_at: datetime | None = None
    source: str = "order"
    held: dict[tuple[str, str], int] = field(default_factory=dict)
    net_sold: dict[tuple[str, str], int] = field(default_factory=dict)
    # Written back: the state, and the lines requested by a hold made in this unit of work.
    dirty: bool = False
    lines: dict[str, tuple[int, int]] = field(default_factory=dict)
    created_at: datetime | None = None
    now: datetime | None = None


@dataclass(frozen=True, slots=True)
class Movement:
    """One ledger row to be. `key` is its business key: a movement applies at most once."""

    key: str
    sku: str
    location_id: str
    delta: int
    reserved_delta: int
    kind: str
    order_ref: str | None = None
    author: str | None = None
    note: str = ""


# --- commands -------------------------------------------------------------------------------

Lines = Sequence[tuple[str, int]]  # (sku, quantity), quantities > 0


@dataclass(frozen=True, slots=True)
class Reserve:
    """Hold the lines for the order until `expires_at`. `strict` (the API): all or nothing,
    refusing with the availability; otherwise (an order event) hold what there is and record
    the rest as a backorder. A reservation that exists already is left as it is."""

    order_ref: str
    lines: Lines
    expires_at: datetime | None
    source: str = "order"
    strict: bool = False
    note: str = ""
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Confirm:
    """The order is paid: what it holds becomes a sale (on_hand and reserved both drop). An
    order with no live hold (never placed, or its hold expired) reserves `lines` and sells them
    at once. `strict` (the API) confirms only a live hold."""

    order_ref: str
    lines: Lines
    strict: bool = False
    note: str = ""
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """The order is cancelled: release exactly what it holds; if it was already paid, return
    what it took (less what refunds returned) to the locations it came from. An order not yet
    seen is marked released, so a late OrderPlaced holds nothing."""

    order_ref: str
    note: str = "order_cancelled"
    strict: bool = False
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Expire:
    """The expiry sweep: release a hold whose time has passed (and only such a hold)."""

    order_ref: str
    now: datetime


@dataclass(frozen=True, slots=True)
class Restock:
    """A refund's restock lines go back on the shelf, once per refund line, at the location
    that sold most of the SKU for the order (else the default location)."""

    order_ref: str
    refund_id: str
    lines: Sequence[tuple[str, str, int]]  # (line_id, sku, quantity)
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Adjust:
    """Staff at a location: a receipt (+quantity), damage (-quantity, at most what is on hand)
    or a count correction (`quantity` is the counted level). `key` makes a retry move nothing."""

    location_id: str
    kind: str
    lines: Lines
    key: str
    author: str
    note: str = ""
    threshold: int | None = None


Command = Reserve | Confirm | Release | Expire | Restock | Adjust


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shortage:
    sku: str
    requested: int
    available: int


class InsufficientStock(Exception):
    def __init__(self, shortages: list[Shortage]) -> None:
        super().__init__(", ".join(f"{s.sku}: {s.requested}>{s.available}" for s in shortages))
        self.shortages = shortages


class StateConflict(Exception):
    """A strict command on a reservation in a state that does not allow it."""

    def __init__(self, order_ref: str, state: str) -> None:
        super().__init__(f"reservation {order_ref!r} is {state}")
        self.order_ref = order_ref
        self.state = state


@dataclass(frozen=True, slots=True)
class Applied:
    movement: Movement
    event: inventory_pb2.StockChanged


@dataclass(slots=True)
class Outcome:
    """What one command did: whether it changed anything, and the reservation's state after."""

    changed: bool
    state: str | None = None
    # A strict reservation refused in a combined unit of work (`Book.refuse_softly`).
    refused: list[Shortage] | None = None


def merge_lines(lines: Lines) -> list[tuple[str, int]]:
    """Lines per SKU (an order may list a SKU twice), in first-seen order; no SKU or no units:
    nothing to hold."""
    out: dict[str, int] = {}
    for sku, qty in lines:
        if sku and qty > 0:
            out[sku] = out.get(sku, 0) + qty
    return list(out.items())


# --- the book -------------------------------------------------------------------------------


@dataclass(slots=True)
class Book:
    items: dict[str, Item]
    orders: dict[str, Order]
    default_threshold: int
    default_location: str
    applied_keys: set[str] = field(default_factory=set)
    applied: list[Applied] = field(default_factory=list)
    # The events to publish in order, each with the index of the command that caused it (for
    # its traceparent), and the SKUs that came back from out of stock (cause, available).
    events: list[tuple[int, str, Message]] = field(default_factory=list)
    back_in_stock: dict[str, tuple[int, int]] = field(default_factory=dict)
    cause: int = 0
    # Combined API reservations: a refused one is an outcome (its claim dropped), not an
    # exception that would fail the others.
    refuse_softly: bool = False
    refused_claims: set[str] = field(default_factory=set)
    # Who the current command's movements are recorded for (the staff or shop principal, the
    # order event, the expiry sweep).
    author: str | None = None
    touched_levels: set[tuple[str, str]] = field(default_factory=set)
    touched_items: set[str] = field(default_factory=set)

    # movements

    def _move(self, m: Movement) -> bool:
        if m.author is None and self.author is not None:
            m = replace(m, author=self.author)
        item = self.items.get(m.sku)
        if item is None or m.key in self.applied_keys or (m.delta == 0 and m.reserved_delta == 0):
            return False
        self.applied_keys.add(m.key)
        level = item.levels.get(m.location_id)
        if level is None:
            level = item.levels[m.location_id] = Level()
        level.on_hand += m.delta
        level.reserved += m.reserved_delta
        # The rules below never ask for this; the CHECK constraints would refuse it anyway.
        assert level.on_hand >= 0 and level.reserved >= 0, (m, level)
        self.touched_levels.add((m.sku, m.location_id))
        self.touched_items.add(m.sku)
        threshold = threshold_of(item.threshold, self.default_threshold)
        status = status_of(item.available, threshold)
        event = inventory_pb2.StockChanged(
            sku=m.sku,
            on_hand=item.on_hand,
            delta=m.delta,
            reason=m.kind,
            order_ref=m.order_ref or "",
            status=STATUS_PB[status],
            reserved=item.reserved,
            available=item.available,
            reserved_delta=m.reserved_delta,
            location_id=m.location_id,
            note=m.note,
        )
        self.applied.append(Applied(m, event))
        self.events.append((self.cause, m.sku, event))
        if status is not item.status:
            self._status_changed(item, status, threshold)
        return True

    def _status_changed(self, item: Item, status: StockStatus, threshold: int) -> None:
        previous = item.status
        item.status = status
        self.events.append(
            (
                self.cause,
                item.sku,
                inventory_pb2.StockStatusChanged(
                    sku=item.sku,
                    previous=STATUS_PB[previous],
                    status=STATUS_PB[status],
                    available=item.available,
                    low_stock_threshold=threshold,
                ),
            )
        )
        if _RANK[status] > _RANK[previous]:
            self.events.append(
                (
                    self.cause,
                    item.sku,
                    inventory_pb2.LowStockAlert(
                        sku=item.sku,
                        status=STATUS_PB[status],
                        available=item.available,
                        low_stock_threshold=threshold,
                    ),
                )
            )
        if previous is StockStatus.out_of_stock:
            self.back_in_stock[item.sku] = (self.cause, item.available)

    # reservations

    def _hold(
        self, order: Order, lines: Lines, *, strict: bool, key: str, note: str
    ) -> list[tuple[str, str, int]]:
        """Allocates the lines over the locations by priority; returns (sku, location, units).
        Strict: raises unless every line is met in full. Unknown SKUs hold nothing."""
        merged = [(sku, qty) for sku, qty in merge_lines(lines)]
        if strict:
            short = [
                Shortage(sku, qty, self.items[sku].allocatable if sku in self.items else 0)
                for sku, qty in merged
                if sku not in self.items or self.items[sku].allocatable < qty
            ]
            if short:
                raise InsufficientStock(short)
        taken: list[tuple[str, str, int]] = []
        for sku, qty in merged:
            item = self.items.get(sku)
            if item is None:
                continue  # a SKU whose stock we do not keep (a service, a gift card)
            want = qty
            for loc in item.order:
                if want == 0:
                    break
                n = min(want, item.available_at(loc))
                if n <= 0:
                    continue
                # An order event's own key part (the phase) keeps a later hold of the same
                # order (paid after its hold expired) distinct from the first.
                m = Movement(
                    f"{key}:{order.order_ref}:{sku}:{loc}",
                    sku,
                    loc,
                    0,
                    n,
                    RESERVE,
                    order.order_ref,
                    note=note,
                )
                if self._move(m):
                    order.held[(sku, loc)] = order.held.get((sku, loc), 0) + n
                    taken.append((sku, loc, n))
                    want -= n
            allocated = qty - want
            order.lines[sku] = (qty, allocated)
            if want:
                short = inventory_pb2.ReservationShort(
                    order_ref=order.order_ref, sku=sku, requested=qty, allocated=allocated
                )
                self.events.append((self.cause, sku, short))
        return taken

    def _release_held(self, order: Order, *, key: str, note: str) -> None:
        for (sku, loc), n in sorted(order.held.items()):
            if n > 0:
                m = Movement(
                    f"{key}:{order.order_ref}:{sku}:{loc}",
                    sku,
                    loc,
                    0,
                    -n,
                    RELEASE,
                    order.order_ref,
                    note=note,
                )
                if self._move(m):
                    order.held[(sku, loc)] = 0

    def _sell_held(self, order: Order, *, note: str) -> None:
        for (sku, loc), n in sorted(order.held.items()):
            if n <= 0:
                continue
            # A count since the hold may have found fewer units than were held: the sale takes
            # what is there, the whole hold is released, and the shortfall is said.
            item = self.items.get(sku)
            on_hand = item.levels[loc].on_hand if item and loc in item.levels else 0
            sold = min(n, on_hand)
            m = Movement(
                f"sale:{order.order_ref}:{sku}:{loc}",
                sku,
                loc,
                -sold,
                -n,
                SALE,
                order.order_ref,
                note=note,
            )
            if self._move(m):
                order.held[(sku, loc)] = 0
                order.net_sold[(sku, loc)] = order.net_sold.get((sku, loc), 0) + sold
                if sold < n:
                    short = inventory_pb2.ReservationShort(
                        order_ref=order.order_ref, sku=sku, requested=n, allocated=sold
                    )
                    self.events.append((self.cause, sku, short))

    def _set_state(self, order: Order, state: str) -> None:
        order.state = state
        order.dirty = True

    def apply(self, command: Command) -> Outcome:
        self.author = "system:hold-expiry" if isinstance(command, Expire) else command.author
        if isinstance(command, Adjust):
            return self._adjust(command)
        if isinstance(command, Restock):
            return self._restock(command)
        order = self.orders[command.order_ref]
        if isinstance(command, Reserve):
            if order.state != NEW:
                return Outcome(False, order.state)
            try:
                self._hold(
                    order, command.lines, strict=command.strict, key="hold", note=command.note
                )
            except InsufficientStock as exc:
                if not self.refuse_softly:
                    raise
                self.refused_claims.add(order.order_ref)
                return Outcome(False, None, refused=exc.shortages)
            order.expires_at = command.expires_at
            order.source = command.source
            self._set_state(order, HELD)
            return Outcome(True, HELD)
        if isinstance(command, Confirm):
            if order.state == HELD:
                self._sell_held(order, note=command.note)
            elif order.state in (NEW, EXPIRED) and not command.strict:
                self._hold(order, command.lines, strict=False, key="paid-hold", note=command.note)
                self._sell_held(order, note=command.note)
            elif command.strict and order.state != CONFIRMED:
                raise StateConflict(order.order_ref, order.state)
            else:
                return Outcome(False, order.state)
            self._set_state(order, CONFIRMED)
            return Outcome(True, CONFIRMED)
        if isinstance(command, Release):
            if order.state == HELD:
                self._release_held(order, key="release", note=command.note)
            elif order.state == CONFIRMED and not command.strict:
                for (sku, loc), n in sorted(order.net_sold.items()):
                    if n > 0:
                        self._move(
                            Movement(
                                f"cancel:{order.order_ref}:{sku}:{loc}",
                                sku,
                                loc,
                                n,
                                0,
                                RETURN,
                                order.order_ref,
                                note=command.note,
                            )
                        )
                        order.net_sold[(sku, loc)] = 0
            elif order.state in (NEW, EXPIRED) and not command.strict:
                pass  # nothing held now; remembered, so a late OrderPlaced/OrderPaid holds nothing
            elif command.strict and order.state not in (RELEASED, EXPIRED):
                raise StateConflict(order.order_ref, order.state)
            else:
                return Outcome(False, order.state)
            self._set_state(order, RELEASED)
            return Outcome(True, RELEASED)
        assert isinstance(command, Expire)
        if order.state != HELD or order.expires_at is None or order.expires_at > command.now:
            return Outcome(False, order.state)
        self._release_held(order, key="expire", note="hold_expired")
        self._set_state(order, EXPIRED)
        return Outcome(True, EXPIRED)

    def _restock(self, command: Restock) -> Outcome:
        order = self.orders.get(command.order_ref)
        changed = False
        for line_id, sku, qty in command.lines:
            if not sku or qty <= 0:
                continue
            sold = {loc: n for (s, loc), n in (order.net_sold.items() if order else ()) if s == sku}
            loc = max(sold, key=lambda k: (sold[k], k)) if sold else self.default_location
            m = Movement(
                f"return:{command.order_ref}:{command.refund_id}:{line_id}",
                sku,
                loc,
                qty,
                0,
                RETURN,
                command.order_ref,
                note="order_refunded",
            )
            if self._move(m):
                changed = True
                if order is not None and (sku, loc) in order.net_sold:
                    order.net_sold[(sku, loc)] -= qty
        return Outcome(changed)

    def _adjust(self, command: Adjust) -> Outcome:
        loc = command.location_id
        if command.kind == DAMAGE:
            short = [
                Shortage(
                    sku,
                    qty,
                    self.items[sku].levels.get(loc, Level()).on_hand if sku in self.items else 0,
                )
                for sku, qty in merge_lines(command.lines)
                if sku not in self.items or self.items[sku].levels.get(loc, Level()).on_hand < qty
            ]
            if short:
                raise InsufficientStock(short)
        changed = False
        for i, (sku, qty) in enumerate(command.lines):
            item = self.items.get(sku)
            if item is None:
                continue
            if command.threshold is not None and item.threshold != command.threshold:
                item.threshold = command.threshold
                self.touched_items.add(sku)
                changed = True
                threshold = threshold_of(item.threshold, self.default_threshold)
                status = status_of(item.available, threshold)
                if status is not item.status:
                    self._status_changed(item, status, threshold)
            level = item.levels.get(loc, Level())
            if command.kind == RECEIPT:
                delta = qty
            elif command.kind == DAMAGE:
                delta = -qty
            else:
                # A count below what is reserved there leaves those holds uncovered; available
                # shows 0 and the holds stay, for staff to resolve.
                delta = qty - level.on_hand
            m = Movement(
                f"{command.key}:{i}",
                sku,
                loc,
                delta,
                0,
                command.kind,
                author=command.author,
                note=command.note,
            )
            changed = self._move(m) or changed
            if loc not in item.order:
                item.order.append(loc)  # allocation order is fixed at load; new ones go last
        return Outcome(changed)

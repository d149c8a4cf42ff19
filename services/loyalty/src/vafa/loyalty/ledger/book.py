"""The ledger's rules, with no I/O: what a write appends, given the state it finds.

A `Book` holds the state a unit of work needs (the locked accounts, their open lots when the
work draws from them, what the orders being reversed earned per line, the idempotency keys
already used) and applies writes to it in order, in memory. `ledger.store` loads a Book under
the account locks and saves what it decided; every write path (the worker's batches, the HTTP
adjustments, `ledger.grant` / `ledger.spend`, the expiry job, merges) goes through it, so there
is one set of rules:

- A grant opens a lot: spendable at once (`delta`), or pending (`pending_delta`) until a date
  or until the order is fulfilled; an unlock later moves it to the spendable balance.
- Every draw (spend, reversal, negative adjustment) takes from available lots soonest expiry
  first (no expiry last; ties by earn date, then lot id) and records which lots it drew on.
- A reversal takes what the order's lines still have, first from the order's own lots (pending
  or not), then from the other available lots; it never takes the balance below zero: it takes
  what there is, records that amount (possibly 0, so its key is claimed), and the shortfall is
  forgiven — the line counts as reversed, a later refund does not try again.
- A spend or a negative adjustment that would go below zero is refused (409).
- Every entry has a business key; a key already used appends nothing and moves nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vafa.kit.errors import Conflict, Problem
from vafa.loyalty.models import EntryKind, LotStatus

_FAR = datetime.max.replace(tzinfo=UTC)


class InsufficientPoints(Problem):
    """A spend (or a negative adjustment) for more than the spendable balance."""

    def __init__(self, *, balance: int, requested: int) -> None:
        super().__init__(
            409,
            f"The spendable balance is {balance} points; {requested} were requested.",
            title="Insufficient points",
            type="insufficient-points",
            balance=balance,
            requested=requested,
        )


class IdempotencyKeyReused(Conflict):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"The idempotency key {key!r} was already used for a different write.",
            idempotency_key=key,
        )


@dataclass(slots=True)
class AccountState:
    balance: int
    pending: int
    tier: str | None = None
    tier_multiplier: object | None = None  # Decimal | None; the rules read it


@dataclass(slots=True, eq=False)
class LotState:
    customer_id: uuid.UUID
    points: int
    remaining: int
    status: str
    reason: str
    earned_at: datetime
    expires_at: datetime | None = None
    pending_until: datetime | None = None
    order_ref: str | None = None
    id: int | None = None  # None until saved
    grant_key: str | None = None  # the key of the entry that opened it, for new lots
    dirty: bool = False

    @property
    def order(self) -> tuple[bool, datetime, datetime, int]:
        """Soonest expiry first; never-expiring last; then earn date, then id."""
        return (
            self.expires_at is None,
            self.expires_at or _FAR,
            self.earned_at,
            self.id if self.id is not None else 1 << 62,
        )


@dataclass(slots=True)
class LineState:
    points: int
    reversed: int = 0
    amount_minor: int = 0
    dirty: bool = False


@dataclass(slots=True)
class Append:
    """An entry decided on, to be written; `balance`/`pending` are the account's after it."""

    customer_id: uuid.UUID
    delta: int
    kind: EntryKind
    reason: str
    key: str
    balance: int
    pending: int
    pending_delta: int = 0
    order_ref: str | None = None
    ref: str | None = None
    author: str | None = None
    # The reason the published event gives (an adjustment's entry keeps the staff's words).
    event_reason: str = ""
    # The lot it opened (earn, positive adjust), expired or unlocked.
    lot: LotState | None = None
    draws: list[tuple[LotState, int]] = field(default_factory=list)
    # Set by store.save.
    entry_id: int | None = None
    created_at: datetime | None = None


class Book:
    """State for one unit of work; apply writes in order; `appended` lists the entries."""

    def __init__(
        self,
        accounts: dict[uuid.UUID, AccountState],
        *,
        lots: dict[uuid.UUID, list[LotState]] | None = None,
        lines: dict[tuple[uuid.UUID, str], dict[str, LineState]] | None = None,
        used_keys: set[str] | None = None,
        lots_loaded: set[uuid.UUID] | None = None,
    ) -> None:
        self.accounts = accounts
        # Open lots (remaining > 0) of the accounts the work draws from (`lots_loaded`), plus
        # the lots this work opened.
        self.lots = lots if lots is not None else {}
        self.lots_loaded = lots_loaded if lots_loaded is not None else set(self.lots)
        self.lines = lines if lines is not None else {}
        self.used_keys = used_keys if used_keys is not None else set()
        self.appended: list[Append] = []
        self.new_lots: list[LotState] = []

    # --- the writes ---------------------------------------------------------------------

    def grant(
        self,
        customer_id: uuid.UUID,
        *,
        points: int,
        key: str,
        reason: str,
        now: datetime,
        kind: EntryKind = EntryKind.earn,
        order_ref: str | None = None,
        ref: str | None = None,
        expires_at: datetime | None = None,
        pending: bool = False,
        pending_until: datetime | None = None,
        author: str | None = None,
        event_reason: str | None = None,
        lines: Mapping[str, tuple[int, int]] | None = None,
    ) -> Append | None:
        """Opens a lot of `points` (> 0). Pending when `pending` (until `pending_until`, or
        until the order is fulfilled when that is None). `lines`: line_id -> (points, amount)
        that make up an order's points, for per-line reversals."""
        if key in self.used_keys:
            return None
        if points <= 0:
            raise ValueError("a grant is for a positive number of points")
        lot = LotState(
            customer_id=customer_id,
            points=points,
            remaining=points,
            status=LotStatus.pending if pending else LotStatus.available,
            reason=reason,
            earned_at=now,
            expires_at=expires_at,
            pending_until=pending_until if pending else None,
            order_ref=order_ref,
            grant_key=key,
        )
        self.new_lots.append(lot)
        self.lots.setdefault(customer_id, []).append(lot)
        if order_ref is not None and lines:
            have = self.lines.setdefault((customer_id, order_ref), {})
            for line_id, (line_points, amount) in lines.items():
                state = have.get(line_id)
                if state is None:
                    have[line_id] = LineState(line_points, 0, amount, dirty=True)
                else:  # a second grant for the same order (a bonus): adds to the line
                    state.points += line_points
                    state.dirty = True
        return self._append(
            customer_id,
            delta=0 if pending else points,
            pending_delta=points if pending else 0,
            kind=kind,
            reason=reason,
            key=key,
            order_ref=order_ref,
            ref=ref,
            author=author,
            event_reason=event_reason,
            lot=lot,
        )

    def spend(
        self,
        customer_id: uuid.UUID,
        *,
        points: int,
        key: str,
        reason: str,
        ref: str | None,
        author: str | None = None,
        kind: EntryKind = EntryKind.spend,
        event_reason: str | None = None,
    ) -> Append | None:
        """Takes `points` (> 0) from the available lots, soonest expiry first; refuses more
        than the spendable balance."""
        if key in self.used_keys:
            return None
        if points <= 0:
            raise ValueError("a spend is for a positive number of points")
        balance = self.accounts[customer_id].balance
        if points > balance:
            raise InsufficientPoints(balance=balance, requested=points)
        draws = self._draw(customer_id, points, self._available(customer_id))
        if sum(n for _, n in draws) != points:  # the lots must hold the balance (reconcile)
            raise AssertionError(f"the lots of {customer_id} hold less than its balance")
        return self._append(
            customer_id,
            delta=-points,
            kind=kind,
            reason=reason,
            key=key,
            ref=ref,
            author=author,
            event_reason=event_reason,
            draws=draws,
        )

    def adjust(
        self,
        customer_id: uuid.UUID,
        *,
        points: int,
        reason: str,
        key: str,
        author: str,
        now: datetime,
        expires_at: datetime | None,
        event_reason: str,
    ) -> Append | None:
        """A manual adjustment: positive opens a lot, negative draws like a spend."""
        if points > 0:
            return self.grant(
                customer_id,
                points=points,
                key=key,
                reason=reason,
                now=now,
                kind=EntryKind.adjust,
                expires_at=expires_at,
                author=author,
                event_reason=event_reason,
            )
        return self.spend(
            customer_id,
            points=-points,
            key=key,
            reason=reason,
            ref=None,
            author=author,
            kind=EntryKind.adjust,
            event_reason=event_reason,
        )

    def reverse(
        self,
        customer_id: uuid.UUID,
        *,
        order_ref: str,
        key: str,
        reason: str,
        wanted: Mapping[str, int] | None,
    ) -> Append | None:
        """Takes back, per line, `wanted[line_id]` points (capped at what the line still has);
        `wanted` None: everything the order still has (a cancellation)."""
        if key in self.used_keys:
            return None
        self._need_lots(customer_id)
        have = self.lines.get((customer_id, order_ref), {})
        total = 0
        for line_id, state in have.items():
            open_points = state.points - state.reversed
            take = (
                open_points if wanted is None else min(max(wanted.get(line_id, 0), 0), open_points)
            )
            if take > 0:
                state.reversed += take  # a shortfall below is forgiven, not owed
                state.dirty = True
                total += take
        lots = self.lots.get(customer_id, [])
        own = sorted(
            (lot for lot in lots if lot.order_ref == order_ref and lot.remaining > 0),
            key=lambda lot: lot.order,
        )
        draws = self._draw(customer_id, total, own)
        taken = sum(n for _, n in draws)
        if taken < total:
            draws += self._draw(
                customer_id,
                total - taken,
                [lot for lot in self._available(customer_id) if lot.order_ref != order_ref],
            )
        delta = -sum(n for lot, n in draws if lot.status == LotStatus.available)
        pending_delta = -sum(n for lot, n in draws if lot.status == LotStatus.pending)
        return self._append(
            customer_id,
            delta=delta,
            pending_delta=pending_delta,
            kind=EntryKind.reverse,
            reason=reason,
            key=key,
            order_ref=order_ref,
            draws=draws,
        )

    def expire(self, lot: LotState, *, key: str) -> Append | None:
        """Expires what is left of a lot (available or still pending)."""
        if key in self.used_keys or lot.remaining <= 0:
            return None
        n = lot.remaining
        pending = lot.status == LotStatus.pending
        lot.remaining = 0
        lot.dirty = True
        return self._append(
            lot.customer_id,
            delta=0 if pending else -n,
            pending_delta=-n if pending else 0,
            kind=EntryKind.expire,
            reason="expired",
            key=key,
            order_ref=lot.order_ref,
            lot=lot,
            draws=[(lot, n)],
        )

    def unlock(self, lot: LotState, *, key: str, reason: str) -> Append | None:
        """A pending lot becomes spendable."""
        if key in self.used_keys or lot.status != LotStatus.pending or lot.remaining <= 0:
            return None
        lot.status = LotStatus.available
        lot.pending_until = None
        lot.dirty = True
        return self._append(
            lot.customer_id,
            delta=lot.remaining,
            pending_delta=-lot.remaining,
            kind=EntryKind.unlock,
            reason=reason,
            key=key,
            order_ref=lot.order_ref,
            lot=lot,
        )

    def move_all(
        self, customer_id: uuid.UUID, *, into: uuid.UUID, key: str, ref: str
    ) -> tuple[Append | None, Append | None]:
        """A merge: everything `customer_id` has (its open lots, balance and pending) moves to
        `into`. Two entries, keys `<key>:out` and `<key>:in`; the lots keep their dates."""
        if f"{key}:out" in self.used_keys:
            return None, None
        self._need_lots(customer_id)
        src = self.accounts[customer_id]
        balance, pending = src.balance, src.pending
        for lot in self.lots.get(customer_id, []):
            if lot.remaining > 0:
                lot.customer_id = into
                lot.dirty = True
                self.lots.setdefault(into, []).append(lot)
        self.lots[customer_id] = []
        out = self._append(
            customer_id,
            delta=-balance,
            pending_delta=-pending,
            kind=EntryKind.merge,
            reason="merged_out",
            key=f"{key}:out",
            ref=ref,
        )
        into_entry = self._append(
            into,
            delta=balance,
            pending_delta=pending,
            kind=EntryKind.merge,
            reason="merged_in",
            key=f"{key}:in",
            ref=ref,
        )
        return out, into_entry

    # --- helpers ------------------------------------------------------------------------

    def _need_lots(self, customer_id: uuid.UUID) -> None:
        if customer_id not in self.lots_loaded:
            raise AssertionError(f"the lots of {customer_id} were not loaded for a draw")

    def _available(self, customer_id: uuid.UUID) -> list[LotState]:
        self._need_lots(customer_id)
        lots = self.lots.get(customer_id, [])
        return sorted(
            (lot for lot in lots if lot.status == LotStatus.available and lot.remaining > 0),
            key=lambda lot: lot.order,
        )

    @staticmethod
    def _draw(
        customer_id: uuid.UUID, points: int, lots: list[LotState]
    ) -> list[tuple[LotState, int]]:
        """Takes up to `points` from `lots` in their order."""
        draws: list[tuple[LotState, int]] = []
        left = points
        for lot in lots:
            if left <= 0:
                break
            n = min(lot.remaining, left)
            if n <= 0:
                continue
            lot.remaining -= n
            lot.dirty = True
            left -= n
            draws.append((lot, n))
        return draws

    def _append(
        self,
        customer_id: uuid.UUID,
        *,
        delta: int,
        kind: EntryKind,
        reason: str,
        key: str,
        pending_delta: int = 0,
        order_ref: str | None = None,
        ref: str | None = None,
        author: str | None = None,
        event_reason: str | None = None,
        lot: LotState | None = None,
        draws: list[tuple[LotState, int]] | None = None,
    ) -> Append:
        account = self.accounts[customer_id]
        balance, pending = account.balance + delta, account.pending + pending_delta
        if balance < 0 or pending < 0:  # the rules above never get here; CHECKs would refuse
            raise AssertionError(f"{key} would take {customer_id} below zero")
        self.used_keys.add(key)
        account.balance, account.pending = balance, pending
        entry = Append(
            customer_id=customer_id,
            delta=delta,
            pending_delta=pending_delta,
            kind=kind,
            reason=reason,
            key=key,
            balance=balance,
            pending=pending,
            order_ref=order_ref,
            ref=ref,
            author=author,
            event_reason=event_reason or reason,
            lot=lot,
            draws=draws or [],
        )
        self.appended.append(entry)
        return entry

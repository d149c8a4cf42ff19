"""The ledger's unit of work, set-based: however many writes a batch holds, it costs a few
statements (module-level `text()`, so nothing is built per call):

1. load: create missing accounts (one multi-row `INSERT ... ON CONFLICT DO NOTHING`), lock
   every account of the work (one `SELECT ... FOR UPDATE` ordered by customer_id, so concurrent
   writers lock in the same order and cannot deadlock), the idempotency keys already used (one
   statement), the open lots of the accounts it draws from (one) and the per-line points of the
   orders it reverses (one);
2. apply the writes in order, in memory, with `book.Book`;
3. save: entries, new lots, changed lots, draws, order lines, balances (one statement each)
   and the events in one `outbox.add_many`, each with the traceparent of what caused it.

Writes to an account are serialised by its row lock held to the commit, so a decision taken on
a balance stays true until then. A key that another transaction takes between the load and the
insert (only possible across customers) makes the insert raise: the consumer replays the batch
one event at a time, and the retry finds the key used.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2
from vafa.kit.cloudevents import deterministic_id
from vafa.kit.outbox import OutboxEvent
from vafa.loyalty.events import LOYALTY_TOPIC, outbox
from vafa.loyalty.ledger.book import AccountState, Append, Book, LineState, LotState
from vafa.loyalty.models import EntryKind

_OPEN = text(
    "INSERT INTO accounts (customer_id) SELECT unnest(CAST(:ids AS uuid[])) "
    "ON CONFLICT (customer_id) DO NOTHING"
)
_LOCK = text(
    "SELECT customer_id, balance, pending, tier, tier_multiplier FROM accounts "
    "WHERE customer_id = ANY(CAST(:ids AS uuid[])) ORDER BY customer_id FOR UPDATE"
)
_USED_KEYS = text(
    "SELECT idempotency_key FROM ledger_entries WHERE idempotency_key = ANY(CAST(:keys AS text[]))"
)
_LOTS = text(
    "SELECT l.id, l.customer_id, l.points, l.remaining, l.status, l.reason, l.earned_at, "
    "l.expires_at, l.pending_until, l.order_ref, e.idempotency_key AS grant_key FROM lots l "
    "LEFT JOIN ledger_entries e ON e.id = l.entry_id "
    "WHERE l.customer_id = ANY(CAST(:ids AS uuid[])) AND l.remaining > 0"
)
_LINES = text(
    "SELECT customer_id, order_ref, line_id, points, reversed, amount_minor "
    "FROM order_line_points "
    "WHERE order_ref = ANY(CAST(:refs AS text[])) AND customer_id = ANY(CAST(:ids AS uuid[]))"
)
# No ON CONFLICT: every key was checked under the account locks, so a conflict means a race
# the batch must not paper over (see the module docstring).
_APPEND = text(
    "INSERT INTO ledger_entries (customer_id, delta, pending_delta, kind, reason, order_ref, "
    "ref, idempotency_key, author, balance_after, pending_after) "
    "SELECT * FROM unnest(CAST(:customer_ids AS uuid[]), CAST(:deltas AS bigint[]), "
    "CAST(:pending_deltas AS bigint[]), CAST(:kinds AS text[]), CAST(:reasons AS text[]), "
    "CAST(:order_refs AS text[]), CAST(:refs AS text[]), CAST(:keys AS text[]), "
    "CAST(:authors AS text[]), CAST(:balances AS bigint[]), CAST(:pendings AS bigint[])) "
    "RETURNING id, idempotency_key, created_at"
)
_NEW_LOTS = text(
    "INSERT INTO lots (customer_id, entry_id, points, remaining, status, reason, order_ref, "
    "earned_at, expires_at, pending_until) "
    "SELECT * FROM unnest(CAST(:customer_ids AS uuid[]), CAST(:entry_ids AS bigint[]), "
    "CAST(:points AS bigint[]), CAST(:remaining AS bigint[]), CAST(:statuses AS text[]), "
    "CAST(:reasons AS text[]), CAST(:order_refs AS text[]), CAST(:earned AS timestamptz[]), "
    "CAST(:expires AS timestamptz[]), CAST(:pending_until AS timestamptz[])) "
    "RETURNING id, entry_id"
)
_SET_LOTS = text(
    "UPDATE lots AS l SET remaining = v.remaining, status = v.status, "
    "customer_id = v.customer_id, pending_until = v.pending_until, updated_at = now() "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:remaining AS bigint[]), "
    "CAST(:statuses AS text[]), CAST(:customer_ids AS uuid[]), "
    "CAST(:pending_until AS timestamptz[])) AS v(id, remaining, status, customer_id, pending_until) "
    "WHERE l.id = v.id"
)
_DRAWS = text(
    "INSERT INTO lot_draws (entry_id, lot_id, points) "
    "SELECT * FROM unnest(CAST(:entry_ids AS bigint[]), CAST(:lot_ids AS bigint[]), "
    "CAST(:points AS bigint[]))"
)
_SET_LINES = text(
    "INSERT INTO order_line_points (customer_id, order_ref, line_id, points, reversed, "
    "amount_minor) "
    "SELECT * FROM unnest(CAST(:customer_ids AS uuid[]), CAST(:order_refs AS text[]), "
    "CAST(:line_ids AS text[]), CAST(:points AS bigint[]), CAST(:reversed AS bigint[]), "
    "CAST(:amounts AS bigint[])) "
    "ON CONFLICT (customer_id, order_ref, line_id) DO UPDATE "
    "SET points = EXCLUDED.points, reversed = EXCLUDED.reversed"
)
_SET_BALANCES = text(
    "UPDATE accounts AS a SET balance = v.balance, pending = v.pending, updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[]), "
    "CAST(:pendings AS bigint[])) AS v(customer_id, balance, pending) "
    "WHERE a.customer_id = v.customer_id"
)
_ENTRY_BY_KEY = text(
    "SELECT e.id, e.customer_id, e.delta, e.pending_delta, e.kind, e.reason, e.order_ref, "
    "e.ref, e.idempotency_key, e.author, e.created_at, e.balance_after, e.pending_after, "
    "(SELECT l.id FROM lots l WHERE l.entry_id = e.id) AS lot_id "
    "FROM ledger_entries e WHERE e.idempotency_key = :key"
)


@dataclass(frozen=True, slots=True)
class Entry:
    """A ledger entry as written."""

    id: int
    customer_id: uuid.UUID
    delta: int
    pending_delta: int
    kind: str
    reason: str
    order_ref: str | None
    ref: str | None
    idempotency_key: str
    author: str | None
    created_at: datetime
    # The account after it (None only for entries from before 0002).
    balance_after: int | None
    pending_after: int | None
    # The lot it opened, for a grant.
    lot_id: int | None = None


async def open_accounts(session: AsyncSession, customer_ids: Iterable[uuid.UUID]) -> None:
    """Creates the accounts that do not exist yet, with balance 0, in one statement."""
    ids = sorted(set(customer_ids))
    if ids:
        await session.execute(_OPEN, {"ids": ids})


async def load(
    session: AsyncSession,
    *,
    customers: Iterable[uuid.UUID],
    keys: Collection[str] = (),
    lots_of: Collection[uuid.UUID] = (),
    orders: Collection[tuple[uuid.UUID, str]] = (),
    create: bool = True,
) -> Book:
    """Locks the accounts (creating them first when `create`) and reads what the work needs:
    the keys already used among `keys`, the open lots of `lots_of`, the per-line points of
    `orders`. An account that does not exist (and `create` is false) is not in the Book."""
    ids = sorted(set(customers) | set(lots_of))
    if create and ids:
        await session.execute(_OPEN, {"ids": ids})
    accounts: dict[uuid.UUID, AccountState] = {}
    if ids:
        for cid, balance, pending, tier, multiplier in await session.execute(_LOCK, {"ids": ids}):
            accounts[cid] = AccountState(int(balance), int(pending), tier, multiplier)
    used: set[str] = set()
    if keys:
        used.update((await session.execute(_USED_KEYS, {"keys": list(set(keys))})).scalars())
    lots: dict[uuid.UUID, list[LotState]] = {}
    if lots_of:
        for row in await session.execute(_LOTS, {"ids": list(set(lots_of))}):
            lots.setdefault(row.customer_id, []).append(
                LotState(
                    id=row.id,
                    customer_id=row.customer_id,
                    points=int(row.points),
                    remaining=int(row.remaining),
                    status=row.status,
                    reason=row.reason,
                    earned_at=row.earned_at,
                    expires_at=row.expires_at,
                    pending_until=row.pending_until,
                    order_ref=row.order_ref,
                    grant_key=row.grant_key,
                )
            )
    lines: dict[tuple[uuid.UUID, str], dict[str, LineState]] = {}
    if orders:
        wanted = set(orders)
        params = {"refs": list({r for _, r in wanted}), "ids": list({c for c, _ in wanted})}
        for cid, ref, line_id, points, reversed_, amount in await session.execute(_LINES, params):
            if (cid, ref) in wanted:
                lines.setdefault((cid, ref), {})[line_id] = LineState(
                    int(points), int(reversed_), int(amount)
                )
    return Book(accounts, lots=lots, lines=lines, used_keys=used, lots_loaded=set(lots_of))


async def save(
    session: AsyncSession, book: Book, traceparents: Sequence[str | None] = ()
) -> list[Entry]:
    """Writes what the Book decided: the entries (in order), the lots, draws and order lines,
    the accounts' new balances and, for every entry that moved points, its event (with
    `traceparents[i]`, the trace of the event that caused entry i, when given)."""
    appended = book.appended
    if not appended:
        return []
    rows = await session.execute(
        _APPEND,
        {
            "customer_ids": [a.customer_id for a in appended],
            "deltas": [a.delta for a in appended],
            "pending_deltas": [a.pending_delta for a in appended],
            "kinds": [a.kind.value for a in appended],
            "reasons": [a.reason for a in appended],
            "order_refs": [a.order_ref for a in appended],
            "refs": [a.ref for a in appended],
            "keys": [a.key for a in appended],
            "authors": [a.author for a in appended],
            "balances": [a.balance for a in appended],
            "pendings": [a.pending for a in appended],
        },
    )
    written = {key: (entry_id, created_at) for entry_id, key, created_at in rows}
    for a in appended:
        a.entry_id, a.created_at = written[a.key]

    new_lots = [lot for lot in book.new_lots if lot.id is None and lot.grant_key]
    if new_lots:
        by_entry = {written[str(lot.grant_key)][0]: lot for lot in new_lots}
        result = await session.execute(
            _NEW_LOTS,
            {
                "customer_ids": [lot.customer_id for lot in new_lots],
                "entry_ids": [written[str(lot.grant_key)][0] for lot in new_lots],
                "points": [lot.points for lot in new_lots],
                "remaining": [lot.remaining for lot in new_lots],
                "statuses": [str(lot.status) for lot in new_lots],
                "reasons": [lot.reason for lot in new_lots],
                "order_refs": [lot.order_ref for lot in new_lots],
                "earned": [lot.earned_at for lot in new_lots],
                "expires": [lot.expires_at for lot in new_lots],
                "pending_until": [lot.pending_until for lot in new_lots],
            },
        )
        for lot_id, entry_id in result:
            lot = by_entry[entry_id]
            lot.id, lot.dirty = lot_id, False
    changed = [lot for lots in book.lots.values() for lot in lots if lot.dirty and lot.id]
    if changed:
        await session.execute(
            _SET_LOTS,
            {
                "ids": [lot.id for lot in changed],
                "remaining": [lot.remaining for lot in changed],
                "statuses": [str(lot.status) for lot in changed],
                "customer_ids": [lot.customer_id for lot in changed],
                "pending_until": [lot.pending_until for lot in changed],
            },
        )
        for lot in changed:
            lot.dirty = False
    draws = [(a.entry_id, lot.id, n) for a in appended for lot, n in a.draws if n > 0]
    if draws:
        await session.execute(
            _DRAWS,
            {
                "entry_ids": [d[0] for d in draws],
                "lot_ids": [d[1] for d in draws],
                "points": [d[2] for d in draws],
            },
        )
    lines = [
        (cid, ref, line_id, state)
        for (cid, ref), have in book.lines.items()
        for line_id, state in have.items()
        if state.dirty
    ]
    if lines:
        await session.execute(
            _SET_LINES,
            {
                "customer_ids": [c for c, _, _, _ in lines],
                "order_refs": [r for _, r, _, _ in lines],
                "line_ids": [li for _, _, li, _ in lines],
                "points": [s.points for _, _, _, s in lines],
                "reversed": [s.reversed for _, _, _, s in lines],
                "amounts": [s.amount_minor for _, _, _, s in lines],
            },
        )
        for _, _, _, s in lines:
            s.dirty = False

    balances: dict[uuid.UUID, tuple[int, int]] = {}
    events: list[OutboxEvent] = []
    entries: list[Entry] = []
    for i, a in enumerate(appended):
        assert a.entry_id is not None and a.created_at is not None
        entries.append(
            Entry(
                id=a.entry_id,
                customer_id=a.customer_id,
                delta=a.delta,
                pending_delta=a.pending_delta,
                kind=a.kind.value,
                reason=a.reason,
                order_ref=a.order_ref,
                ref=a.ref,
                idempotency_key=a.key,
                author=a.author,
                created_at=a.created_at,
                balance_after=a.balance,
                pending_after=a.pending,
                lot_id=a.lot.id if a.lot is not None and a.lot.grant_key == a.key else None,
            )
        )
        balances[a.customer_id] = (a.balance, a.pending)  # the last one of the account wins
        message = event_for(a)
        if message is None:
            continue
        events.append(
            OutboxEvent(
                topic=LOYALTY_TOPIC,
                key=str(a.customer_id),
                message=message,
                # One entry, one event: the same id however often the relay has to send it.
                event_id=deterministic_id("loyalty", a.key),
                traceparent=traceparents[i] if i < len(traceparents) else None,
            )
        )
    book.appended = []
    book.new_lots = []
    await session.execute(
        _SET_BALANCES,
        {
            "ids": list(balances),
            "balances": [b for b, _ in balances.values()],
            "pendings": [p for _, p in balances.values()],
        },
    )
    await outbox.add_many(session, events)
    return entries


_last_ts: tuple[datetime | None, Timestamp] = (None, Timestamp())


def _ts(value: datetime | None) -> Timestamp:
    """The entries of one save share their created_at (the transaction's now()): convert it
    once, not per event."""
    global _last_ts
    if value is not None and _last_ts[0] == value:
        return _last_ts[1]
    ts = Timestamp()
    if value is not None:
        ts.FromDatetime(value)
    _last_ts = (value, ts)
    return ts


def event_for(a: Append) -> Message | None:
    """The event an entry publishes; None for one that moved nothing (a reversal that took
    nothing)."""
    moved = a.delta + a.pending_delta
    if a.delta == 0 and a.pending_delta == 0:
        return None
    entry_id = str(a.entry_id)
    at = _ts(a.created_at)
    cid = str(a.customer_id)
    if a.kind is EntryKind.earn:
        return loyalty_pb2.PointsEarned(
            customer_id=cid,
            points=moved,
            balance=a.balance,
            reason=a.event_reason,
            order_ref=a.order_ref or "",
            entry_id=entry_id,
            occurred_at=at,
        )
    if a.kind is EntryKind.reverse:
        return loyalty_pb2.PointsReversed(
            customer_id=cid,
            points=-moved,
            balance=a.balance,
            reason=a.event_reason,
            order_ref=a.order_ref or "",
            entry_id=entry_id,
            occurred_at=at,
        )
    if a.kind is EntryKind.spend:
        return loyalty_pb2.PointsRedeemed(
            customer_id=cid,
            points=-a.delta,
            balance=a.balance,
            reason=a.event_reason,
            ref=a.ref or "",
            entry_id=entry_id,
            occurred_at=at,
        )
    if a.kind is EntryKind.expire:
        return loyalty_pb2.PointsExpired(
            customer_id=cid,
            points=-moved,
            balance=a.balance,
            lot_id=str(a.lot.id if a.lot else ""),
            entry_id=entry_id,
            occurred_at=at,
        )
    if a.kind is EntryKind.unlock:
        return loyalty_pb2.PointsUnlocked(
            customer_id=cid,
            points=a.delta,
            balance=a.balance,
            lot_id=str(a.lot.id if a.lot else ""),
            order_ref=a.order_ref or "",
            occurred_at=at,
        )
    # adjust and merge: a correction, by staff (with their reason) or by the system.
    return loyalty_pb2.PointsAdjusted(
        customer_id=cid,
        points=moved,
        balance=a.balance,
        reason=a.reason,
        author=a.author or "system",
        entry_id=entry_id,
        occurred_at=at,
    )


async def entry_by_key(session: AsyncSession, key: str) -> Entry | None:
    row = (await session.execute(_ENTRY_BY_KEY, {"key": key})).one_or_none()
    return None if row is None else Entry(*row)

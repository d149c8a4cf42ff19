"""The ledger's unit of work, set-based: however many events a batch holds, it costs a few
statements (module-level `text()`, so nothing is built per call):

1. load: create missing accounts (one multi-row `INSERT ... ON CONFLICT DO NOTHING`), lock
   every account of the work (one `SELECT ... FOR UPDATE` ordered by customer_id, so concurrent
   writers lock in the same order and cannot deadlock), the work's idempotency keys already
   used (one statement), and what the orders it reverses have earned and still have (one);
2. apply the events in order, in memory, with `rules.Ledger`;
3. save: the entries in one multi-row insert, the balances in one UPDATE from unnest, and the
   events in one `outbox.add_many`, each with the traceparent of the event that caused it.

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

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2
from vafa.kit.cloudevents import deterministic_id
from vafa.kit.outbox import OutboxEvent
from vafa.loyalty.events import LOYALTY_TOPIC, outbox
from vafa.loyalty.points.rules import Append, Ledger, OrderPoints, Purchase

_OPEN = text(
    "INSERT INTO accounts (customer_id) SELECT unnest(CAST(:ids AS uuid[])) "
    "ON CONFLICT (customer_id) DO NOTHING"
)
_LOCK = text(
    "SELECT customer_id, balance FROM accounts WHERE customer_id = ANY(CAST(:ids AS uuid[])) "
    "ORDER BY customer_id FOR UPDATE"
)
_USED_KEYS = text(
    "SELECT idempotency_key FROM ledger_entries WHERE idempotency_key = ANY(CAST(:keys AS text[]))"
)
# Per (customer, order): earned, and net of reversals. Filtered to the exact pairs in Python.
_ORDER_POINTS = text(
    "SELECT customer_id, order_ref, "
    "COALESCE(SUM(delta) FILTER (WHERE kind = 'earn'), 0), COALESCE(SUM(delta), 0) "
    "FROM ledger_entries "
    "WHERE order_ref = ANY(CAST(:refs AS text[])) AND customer_id = ANY(CAST(:ids AS uuid[])) "
    "AND kind IN ('earn', 'reverse') "
    "GROUP BY customer_id, order_ref"
)
# No ON CONFLICT: every key was checked under the account locks, so a conflict means a race
# the batch must not paper over (see the module docstring).
_APPEND = text(
    "INSERT INTO ledger_entries "
    "(customer_id, delta, kind, reason, order_ref, idempotency_key, author) "
    "SELECT * FROM unnest(CAST(:customer_ids AS uuid[]), CAST(:deltas AS bigint[]), "
    "CAST(:kinds AS text[]), CAST(:reasons AS text[]), CAST(:order_refs AS text[]), "
    "CAST(:keys AS text[]), CAST(:authors AS text[])) "
    "RETURNING id, idempotency_key, created_at"
)
_SET_BALANCES = text(
    "UPDATE accounts AS a SET balance = v.balance, updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[])) AS v(customer_id, balance) "
    "WHERE a.customer_id = v.customer_id"
)
_ENTRY_BY_KEY = text(
    "SELECT id, customer_id, delta, kind, reason, order_ref, idempotency_key, author, "
    "created_at FROM ledger_entries WHERE idempotency_key = :key"
)


@dataclass(frozen=True, slots=True)
class Entry:
    """A ledger entry as written."""

    id: int
    customer_id: uuid.UUID
    delta: int
    kind: str
    reason: str
    order_ref: str | None
    idempotency_key: str
    author: str | None
    created_at: datetime


async def open_accounts(session: AsyncSession, customer_ids: Iterable[uuid.UUID]) -> None:
    """Creates the accounts that do not exist yet, with balance 0, in one statement (in
    customer_id order, like the locks)."""
    ids = sorted(set(customer_ids))
    if ids:
        await session.execute(_OPEN, {"ids": ids})


async def load(
    session: AsyncSession,
    *,
    customers: Iterable[uuid.UUID],
    keys: Collection[str] = (),
    orders: Collection[tuple[uuid.UUID, str]] = (),
    create: bool = True,
) -> Ledger:
    """Locks the accounts (creating them first when `create`) and reads the keys and orders
    the work needs. An account that does not exist (and `create` is false) is not in
    `balances`."""
    ids = sorted(set(customers))
    if create and ids:
        await session.execute(_OPEN, {"ids": ids})
    balances: dict[uuid.UUID, int] = {}
    if ids:
        for customer_id, balance in await session.execute(_LOCK, {"ids": ids}):
            balances[customer_id] = balance
    used: set[str] = set()
    if keys:
        used.update((await session.execute(_USED_KEYS, {"keys": list(set(keys))})).scalars())
    points = {pair: OrderPoints() for pair in orders}
    if points:
        params = {
            "refs": list({ref for _, ref in points}),
            "ids": list({customer for customer, _ in points}),
        }
        for customer_id, order_ref, earned, net in await session.execute(_ORDER_POINTS, params):
            found = points.get((customer_id, order_ref))
            if found is not None:
                found.earned, found.net = int(earned), int(net)
    return Ledger(balances, points, used)


async def save(
    session: AsyncSession, appended: Sequence[Append], traceparents: Sequence[str | None] = ()
) -> list[Entry]:
    """Writes the entries (in order), the accounts' new balances and, for every entry that
    moved a balance, its PointsEarned / PointsReversed event (with `traceparents[i]`, the
    trace of the event that caused entry i, when given). Returns the entries as written."""
    if not appended:
        return []
    rows = await session.execute(
        _APPEND,
        {
            "customer_ids": [a.customer_id for a in appended],
            "deltas": [a.delta for a in appended],
            "kinds": [a.kind.value for a in appended],
            "reasons": [a.reason for a in appended],
            "order_refs": [a.order_ref for a in appended],
            "keys": [a.key for a in appended],
            "authors": [a.author for a in appended],
        },
    )
    written = {key: (entry_id, created_at) for entry_id, key, created_at in rows}
    entries: list[Entry] = []
    balances: dict[uuid.UUID, int] = {}
    events: list[OutboxEvent] = []
    for i, a in enumerate(appended):
        entry_id, created_at = written[a.key]
        entry = Entry(
            id=entry_id,
            customer_id=a.customer_id,
            delta=a.delta,
            kind=a.kind.value,
            reason=a.reason,
            order_ref=a.order_ref,
            idempotency_key=a.key,
            author=a.author,
            created_at=created_at,
        )
        entries.append(entry)
        if a.delta == 0:  # a reversal that took nothing: recorded, but moves and tells nothing
            continue
        balances[a.customer_id] = a.balance  # the last one of the account wins
        events.append(
            OutboxEvent(
                topic=LOYALTY_TOPIC,
                key=str(a.customer_id),
                message=points_message(entry, balance=a.balance, reason=a.event_reason),
                # One entry, one event: the same id however often the relay has to send it.
                event_id=deterministic_id("loyalty", a.key),
                traceparent=traceparents[i] if i < len(traceparents) else None,
            )
        )
    if balances:
        await session.execute(
            _SET_BALANCES, {"ids": list(balances), "balances": list(balances.values())}
        )
    await outbox.add_many(session, events)
    return entries


def points_message(
    entry: Entry, *, balance: int, reason: str
) -> loyalty_pb2.PointsEarned | loyalty_pb2.PointsReversed:
    occurred_at = Timestamp()
    occurred_at.FromDatetime(entry.created_at)
    cls = loyalty_pb2.PointsEarned if entry.delta > 0 else loyalty_pb2.PointsReversed
    return cls(
        customer_id=str(entry.customer_id),
        points=abs(entry.delta),
        balance=balance,
        reason=reason,
        order_ref=entry.order_ref or "",
        entry_id=str(entry.id),
        occurred_at=occurred_at,
    )


async def entry_by_key(session: AsyncSession, key: str) -> Entry | None:
    row = (await session.execute(_ENTRY_BY_KEY, {"key": key})).one_or_none()
    return None if row is None else Entry(*row)


async def apply_purchases(
    session: AsyncSession,
    purchases: Sequence[Purchase],
    traceparents: Sequence[str | None] = (),
) -> list[Entry | None]:
    """Applies purchases in order as one unit of work; returns, per purchase, the entry it
    appended or None."""
    if not purchases:
        return []
    ledger = await load(
        session,
        customers=[p.customer_id for p in purchases],
        keys=[k for p in purchases if (k := p.key) is not None],
        orders={(p.customer_id, p.order_ref) for p in purchases if p.reverses},
    )
    decided = [ledger.apply(p) for p in purchases]
    appended: list[Append] = []
    causes: list[str | None] = []
    for i, a in enumerate(decided):
        if a is not None:
            appended.append(a)
            causes.append(traceparents[i] if i < len(traceparents) else None)
    saved = iter(await save(session, appended, causes))
    return [None if a is None else next(saved) for a in decided]

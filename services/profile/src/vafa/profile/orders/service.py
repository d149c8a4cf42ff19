"""Purchase history: a shop order event is attributed to a customer, kept on the customer's
orders and timeline, and republished as PurchaseAttributed for every service that reasons
about customers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.money import MoneyError, to_major
from vafa.kit.outbox import OutboxEvent
from vafa.profile.customers import service as customers
from vafa.profile.customers.identities import (
    Identity,
    IdentityKind,
    InvalidIdentity,
    normalise_email,
    normalise_phone,
    platform_name,
    region_or,
    shop_identity,
)
from vafa.profile.customers.schemas import LifecycleStage
from vafa.profile.duplicates import service as duplicates
from vafa.profile.events import PURCHASES_TOPIC, outbox
from vafa.profile.timeline import service as timeline


class PurchaseKind(StrEnum):
    placed = "placed"
    paid = "paid"
    cancelled = "cancelled"
    refunded = "refunded"
    # Shipped: on the timeline and republished; the order's (financial) status is unchanged.
    fulfilled = "fulfilled"


# An order's status only moves forward: a late "placed" never undoes "paid".
_RANK = {
    PurchaseKind.placed: 0,
    PurchaseKind.paid: 1,
    PurchaseKind.cancelled: 2,
    PurchaseKind.refunded: 3,
}

_PB_KIND = {
    PurchaseKind.placed: profile_pb2.PURCHASE_KIND_PLACED,
    PurchaseKind.paid: profile_pb2.PURCHASE_KIND_PAID,
    PurchaseKind.cancelled: profile_pb2.PURCHASE_KIND_CANCELLED,
    PurchaseKind.refunded: profile_pb2.PURCHASE_KIND_REFUNDED,
    PurchaseKind.fulfilled: profile_pb2.PURCHASE_KIND_FULFILLED,
}


class ConcurrentDuplicate(RuntimeError):
    """The same event was applied by another transaction while this one ran: roll back; the
    retry sees the entry and does nothing."""


def order_identities(
    order: shop_orders_pb2.Order, *, default_region: str
) -> tuple[list[Identity], dict[str, str]]:
    """The buyer's usable identities in precedence order (shop id, email, phone), and the
    rejected ones with the reason (kept on the timeline, never stored as identities)."""
    buyer = order.customer
    identities: list[Identity] = []
    rejected: dict[str, str] = {}
    if buyer.shop_customer_id.strip():
        identities.append(
            Identity(
                IdentityKind.shop,
                shop_identity(platform_name(order.platform), order.shop, buyer.shop_customer_id),
            )
        )
    if buyer.email.strip():
        try:
            identities.append(Identity(IdentityKind.email, normalise_email(buyer.email)))
        except InvalidIdentity as exc:
            rejected["email"] = str(exc)
    if buyer.phone.strip():
        region = region_or(buyer.country_code, default_region)
        try:
            identities.append(
                Identity(IdentityKind.phone, normalise_phone(buyer.phone, region=region))
            )
        except InvalidIdentity as exc:
            rejected["phone"] = str(exc)
    return identities, rejected


def _when(ts: Timestamp, fallback: datetime) -> datetime:
    if ts.seconds or ts.nanos:
        return ts.ToDatetime(tzinfo=UTC)
    return fallback


def _money(amount_minor: int, currency: str) -> str:
    try:
        return f"{to_major(amount_minor, currency)} {currency}"
    except MoneyError:
        return f"{amount_minor} (minor units) {currency}".rstrip()


def _summary(
    kind: PurchaseKind,
    order: shop_orders_pb2.Order,
    currency: str,
    refund: shop_orders_pb2.Refund | None,
) -> str:
    name = f"Order {order.order_number or order.order_ref}"
    total = _money(order.total.amount_minor, currency)
    if kind == PurchaseKind.refunded and refund is not None:
        return f"{name} refunded: {_money(refund.amount.amount_minor, currency)} of {total}."
    return f"{name} {kind.value}: {total}."


def _data(
    order: shop_orders_pb2.Order,
    currency: str,
    *,
    rejected: dict[str, str],
    resolution: customers.Resolution,
    refund: shop_orders_pb2.Refund | None,
    reason: str,
) -> dict[str, Any]:
    buyer = order.customer
    data: dict[str, Any] = {
        "order_ref": order.order_ref,
        "order_number": order.order_number or None,
        "platform": platform_name(order.platform),
        "shop": order.shop,
        "financial_status": order.financial_status or None,
        "total_minor": order.total.amount_minor,
        "currency": currency,
        "items": sum(line.quantity for line in order.line_items),
        "discount_codes": list(order.discount_codes),
        "test": order.test,
        # The buyer as the shop sent them, including what could not become an identity.
        "buyer": {
            "shop_customer_id": buyer.shop_customer_id or None,
            "email": buyer.email or None,
            "phone": buyer.phone or None,
        },
    }
    if rejected:
        data["rejected_identities"] = rejected
    if resolution.conflicts:
        data["identity_conflicts"] = [
            {"kind": c.kind, "customer_id": str(c.owner)} for c in resolution.conflicts
        ]
    if refund is not None:
        data["refund"] = {"refund_id": refund.refund_id, "amount_minor": refund.amount.amount_minor}
    if reason:
        data["reason"] = reason
    return data


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One shop order event, as `apply_order_events` takes it."""

    kind: PurchaseKind
    order: shop_orders_pb2.Order
    event_id: str
    occurred_at: datetime
    refund: shop_orders_pb2.Refund | None = None
    reason: str = ""
    # The causing event's, for the events published (None: the current one).
    traceparent: str | None = None


@dataclass(slots=True)
class OrderState:
    """An order as `apply_order_events` holds it (the columns of `orders`)."""

    order_ref: str
    customer_id: uuid.UUID
    status: str
    total_minor: int
    currency: str
    order_number: str | None
    placed_at: datetime
    refunded_minor: int
    new: bool = False
    dirty: bool = False


# The orders of a batch, locked, and which of its events are already applied (their timeline
# entry exists): one statement, rows told apart by `applied`.
_READ = text(
    "WITH locked AS ("
    " SELECT order_ref, customer_id, status, total_minor, currency, order_number, placed_at,"
    " refunded_minor FROM orders WHERE order_ref = ANY(CAST(:refs AS text[]))"
    " ORDER BY order_ref FOR UPDATE"
    ") "
    "SELECT CAST(NULL AS text) AS applied, * FROM locked "
    "UNION ALL "
    "SELECT source_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM timeline_entries "
    "WHERE source_id = ANY(CAST(:ids AS text[]))"
)
# New orders, changed orders and the timeline entries in one statement (any part may be empty).
# No ON CONFLICT for new orders: one inserted concurrently since we looked fails the batch, and
# the retry finds it (and keeps it with its first customer).
_WRITE_ORDERS = (
    "WITH new_orders AS ("
    " INSERT INTO orders (order_ref, customer_id, status, total_minor, currency, order_number,"
    " placed_at, refunded_minor)"
    " SELECT * FROM unnest(CAST(:new_refs AS text[]), CAST(:new_customer_ids AS uuid[]),"
    " CAST(:new_statuses AS text[]), CAST(:new_totals AS bigint[]),"
    " CAST(:new_currencies AS text[]), CAST(:new_numbers AS text[]),"
    " CAST(:new_placed AS timestamptz[]), CAST(:new_refunded AS bigint[]))"
    "), changed_orders AS ("
    " UPDATE orders o SET status = u.status, total_minor = u.total_minor,"
    " currency = u.currency, order_number = u.order_number, refunded_minor = u.refunded_minor,"
    " updated_at = now()"
    " FROM unnest(CAST(:refs AS text[]), CAST(:statuses AS text[]), CAST(:totals AS bigint[]),"
    " CAST(:currencies AS text[]), CAST(:numbers AS text[]), CAST(:refunded AS bigint[]))"
    " AS u(order_ref, status, total_minor, currency, order_number, refunded_minor)"
    " WHERE o.order_ref = u.order_ref"
    ") "
)
# Constants only: every value is a bind parameter.
_WRITE = text(_WRITE_ORDERS + timeline.ADD_ENTRIES_SQL)


def _apply_to_order(
    existing: OrderState | None,
    event: OrderEvent,
    *,
    customer_id: uuid.UUID,
    currency: str,
) -> OrderState:
    """The order after the event: created with the event's customer, or moved forward."""
    kind, order, refund = event.kind, event.order, event.refund
    if existing is None:
        row = OrderState(
            order_ref=order.order_ref,
            customer_id=customer_id,
            # A fulfilment seen first: the order exists, not known to be paid.
            status=PurchaseKind.placed.value if kind == PurchaseKind.fulfilled else kind.value,
            total_minor=order.total.amount_minor,
            currency=currency,
            order_number=order.order_number or None,
            placed_at=_when(order.placed_at, event.occurred_at),
            refunded_minor=0,
            new=True,
        )
    else:
        row = existing
        before = (row.status, row.total_minor, row.currency, row.order_number)
        if kind in _RANK and _RANK[kind] > _RANK[PurchaseKind(row.status)]:
            row.status = kind.value
        # The shop's latest view of the order (edits change totals).
        if order.HasField("total"):
            row.total_minor = order.total.amount_minor
        row.currency = currency or row.currency
        row.order_number = order.order_number or row.order_number
        if before != (row.status, row.total_minor, row.currency, row.order_number):
            row.dirty = True
    if kind == PurchaseKind.refunded and refund is not None:
        refunded = min(row.total_minor, row.refunded_minor + refund.amount.amount_minor)
        if refunded != row.refunded_minor:
            row.refunded_minor = refunded
            row.dirty = True
    return row


def _entry_time(event: OrderEvent) -> datetime:
    if event.kind == PurchaseKind.placed:
        return _when(event.order.placed_at, event.occurred_at)
    if event.kind == PurchaseKind.refunded and event.refund is not None:
        return _when(event.refund.refunded_at, event.occurred_at)
    return event.occurred_at


def _purchase_event(event: OrderEvent, customer_id: uuid.UUID) -> OutboxEvent:
    message = profile_pb2.PurchaseAttributed(
        customer_id=str(customer_id), kind=_PB_KIND[event.kind], source_event_id=event.event_id
    )
    message.order.CopyFrom(event.order)
    if event.refund is not None:
        message.refund.CopyFrom(event.refund)
    return OutboxEvent(
        PURCHASES_TOPIC,
        str(customer_id),
        message,
        event_id=cloudevents.deterministic_id("profile", "purchase", event.event_id),
        traceparent=event.traceparent,
    )


async def _read(
    session: AsyncSession, events: Sequence[OrderEvent]
) -> tuple[dict[str, OrderState], set[str]]:
    """The batch's existing orders (locked) and the ids of its events already applied."""
    rows = await session.execute(
        _READ,
        {
            "refs": sorted({e.order.order_ref for e in events}),
            "ids": [e.event_id for e in events],
        },
    )
    orders: dict[str, OrderState] = {}
    applied: set[str] = set()
    for r in rows.all():
        if r.applied is not None:
            applied.add(r.applied)
            continue
        orders[r.order_ref] = OrderState(
            order_ref=r.order_ref,
            customer_id=r.customer_id,
            status=r.status,
            total_minor=r.total_minor,
            currency=r.currency,
            order_number=r.order_number,
            placed_at=r.placed_at,
            refunded_minor=r.refunded_minor,
        )
    return orders, applied


async def _write(
    session: AsyncSession, orders: Sequence[OrderState], entries: Sequence[timeline.NewEntry]
) -> set[str]:
    """Writes the new and changed orders and adds the entries; the source ids added."""
    new = [o for o in orders if o.new]
    changed = [o for o in orders if o.dirty and not o.new]
    result = await session.execute(
        _WRITE,
        {
            "new_refs": [o.order_ref for o in new],
            "new_customer_ids": [o.customer_id for o in new],
            "new_statuses": [o.status for o in new],
            "new_totals": [o.total_minor for o in new],
            "new_currencies": [o.currency for o in new],
            "new_numbers": [o.order_number for o in new],
            "new_placed": [o.placed_at for o in new],
            "new_refunded": [o.refunded_minor for o in new],
            "refs": [o.order_ref for o in changed],
            "statuses": [o.status for o in changed],
            "totals": [o.total_minor for o in changed],
            "currencies": [o.currency for o in changed],
            "numbers": [o.order_number for o in changed],
            "refunded": [o.refunded_minor for o in changed],
            **timeline.entry_params(entries),
        },
    )
    for o in orders:
        o.new = o.dirty = False
    return set(result.scalars())


async def apply_order_events(
    session: AsyncSession, events: Sequence[OrderEvent], *, default_region: str
) -> list[OrderState | None]:
    """Applies shop order events in order, each once per `event_id`, as one unit of work: for
    each, resolves the buyer, moves the order forward, adds the timeline entry and publishes
    PurchaseAttributed (and CustomerRegistered or CustomerUpdated when the file was opened or
    changed). A later event sees what an earlier one did (the customer it opened, the order it
    created). Returns, per event, the order after the batch, or None for an event already
    applied (or repeated in the batch).

    Reads in at most four statements (the orders, locked, and the events already applied;
    owners of the buyers' identities; the customers that can be matched, locked in id order;
    identities of known customers whose snapshot is published) and writes in three (customers
    and identities; orders and timeline; outbox), plus the outbox's notify. May raise customers.IdentityRace or ConcurrentDuplicate: both mean roll
    back and retry (one event at a time, as the kit consumer does)."""
    firsts: dict[str, OrderEvent] = {}
    for event in events:
        firsts.setdefault(event.event_id, event)
    unique_events = list(firsts.values())
    orders, applied = await _read(session, unique_events)
    todo = [e for e in unique_events if e.event_id not in applied]
    if not todo:
        return [None] * len(events)

    parsed = [order_identities(e.order, default_region=default_region) for e in todo]
    book = await customers.Book.load(
        session,
        identities=[ids for ids, _ in parsed],
        forced={o.customer_id for o in orders.values()},
    )

    entries: list[timeline.NewEntry] = []
    # Per event, in order: the customer event (rendered once snapshots are read) and the purchase.
    published: list[tuple[customers.Resolution, customers.CustomerState, OrderEvent]] = []
    purchases: list[OutboxEvent] = []
    conflicts: list[duplicates.Pair] = []
    result: dict[str, OrderState] = {}
    for event, (identities, rejected) in zip(todo, parsed, strict=True):
        order = event.order
        existing = orders.get(order.order_ref)
        buyer = order.customer
        resolution = book.resolve(
            identities,
            details=customers.Details(
                first_name=buyer.first_name,
                last_name=buyer.last_name,
                country_code=buyer.country_code,
                city=buyer.city,
            ),
            stage=LifecycleStage.customer,
            # An order stays with the customer it was first attributed to.
            customer_id=existing.customer_id if existing is not None else None,
            context=order.order_ref,
            # The first PAID order makes a lead a customer (registered-only vs purchased).
            paid_at=event.occurred_at if event.kind == PurchaseKind.paid else None,
        )
        customer = resolution.customer
        currency = (order.currency or order.total.currency).upper()
        row = _apply_to_order(existing, event, customer_id=customer.id, currency=currency)
        orders[order.order_ref] = result[event.event_id] = row
        entries.append(
            timeline.NewEntry(
                customer_id=customer.id,
                kind=f"order.{event.kind.value}",
                occurred_at=_entry_time(event),
                source="shop",
                source_id=event.event_id,
                summary=_summary(event.kind, order, currency, event.refund),
                data=_data(
                    order,
                    currency,
                    rejected=rejected,
                    resolution=resolution,
                    refund=event.refund,
                    reason=event.reason,
                ),
            )
        )
        if resolution.created or resolution.changed_fields:
            published.append((resolution, book.capture(customer), event))
        # One order naming identities of two files: an exact duplicate for the review queue.
        conflicts += [
            duplicates.pair(
                customer.id,
                c.owner,
                "shared_identity",
                1.0,
                {"kind": c.kind, "order_ref": order.order_ref},
            )
            for c in resolution.conflicts
        ]
        purchases.append(_purchase_event(event, customer.id))

    context = todo[0].order.order_ref if len(todo) == 1 else f"{len(todo)} order events"
    await book.flush(session, context=context)
    if conflicts:
        await duplicates.record(session, conflicts)
    added = await _write(session, list(orders.values()), entries)
    if len(added) != len(entries):
        missing = next(e.source_id for e in entries if e.source_id not in added)
        raise ConcurrentDuplicate(missing)

    snapshots = await book.snapshots(session, [captured for _, captured, _ in published])
    customer_events: dict[str, OutboxEvent] = {}
    for (resolution, _, event), snap in zip(published, snapshots, strict=True):
        customer_event = customers.resolution_event(
            resolution,
            snap,
            source="shop_order",
            cause_id=event.event_id,
            traceparent=event.traceparent,
        )
        if customer_event is not None:
            customer_events[event.event_id] = customer_event
    out: list[OutboxEvent] = []
    for event, purchase in zip(todo, purchases, strict=True):
        if event.event_id in customer_events:
            out.append(customer_events[event.event_id])
        out.append(purchase)
    await outbox.add_many(session, out)

    returned: list[OrderState | None] = []
    handed: set[str] = set()
    for event in events:
        first = event.event_id not in handed
        handed.add(event.event_id)
        returned.append(result.get(event.event_id) if first else None)
    return returned


async def record_order_event(
    session: AsyncSession,
    *,
    kind: PurchaseKind,
    order: shop_orders_pb2.Order,
    event_id: str,
    occurred_at: datetime,
    default_region: str,
    refund: shop_orders_pb2.Refund | None = None,
    reason: str = "",
) -> OrderState | None:
    """Applies one shop order event once per `event_id` (`apply_order_events` with one event):
    the order, or None for an event already applied."""
    event = OrderEvent(
        kind=kind,
        order=order,
        event_id=event_id,
        occurred_at=occurred_at,
        refund=refund,
        reason=reason,
    )
    return (await apply_order_events(session, [event], default_region=default_region))[0]

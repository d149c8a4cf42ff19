"""Purchase history: a shop order event is attributed to a customer, kept on the customer's
orders and timeline, and republished as PurchaseAttributed for every service that reasons
about customers."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2, shop_orders_pb2
from vafa.kit import cloudevents
from vafa.kit.money import MoneyError, to_major
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
from vafa.profile.events import PURCHASES_TOPIC, outbox
from vafa.profile.models import Order
from vafa.profile.timeline import service as timeline


class PurchaseKind(StrEnum):
    placed = "placed"
    paid = "paid"
    cancelled = "cancelled"
    refunded = "refunded"


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
) -> Order | None:
    """Applies one shop order event once per `event_id`: resolves the buyer, upserts the order,
    adds the timeline entry and publishes PurchaseAttributed (and CustomerRegistered or
    CustomerUpdated when the file was opened or changed). Returns the order, or None for an
    event already applied. May raise customers.IdentityRace or ConcurrentDuplicate: both mean
    roll back and retry."""
    if await timeline.has_entry(session, source_id=event_id):
        return None
    existing = await session.get(Order, order.order_ref, with_for_update=True)
    identities, rejected = order_identities(order, default_region=default_region)
    buyer = order.customer
    resolution = await customers.resolve_customer(
        session,
        identities=identities,
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
    )
    customer = resolution.customer
    currency = (order.currency or order.total.currency).upper()
    if existing is None:
        row = Order(
            order_ref=order.order_ref,
            customer_id=customer.id,
            status=kind.value,
            total_minor=order.total.amount_minor,
            currency=currency,
            order_number=order.order_number or None,
            placed_at=_when(order.placed_at, occurred_at),
            refunded_minor=0,
        )
        session.add(row)
    else:
        row = existing
        if _RANK[kind] > _RANK[PurchaseKind(row.status)]:
            row.status = kind.value
        # The shop's latest view of the order (edits change totals).
        if order.HasField("total"):
            row.total_minor = order.total.amount_minor
        row.currency = currency or row.currency
        row.order_number = order.order_number or row.order_number
    if kind == PurchaseKind.refunded and refund is not None:
        row.refunded_minor = min(row.total_minor, row.refunded_minor + refund.amount.amount_minor)
    await session.flush()

    if kind == PurchaseKind.placed:
        at = _when(order.placed_at, occurred_at)
    elif kind == PurchaseKind.refunded and refund is not None:
        at = _when(refund.refunded_at, occurred_at)
    else:
        at = occurred_at
    entry = await timeline.add_entry(
        session,
        customer_id=customer.id,
        kind=f"order.{kind.value}",
        occurred_at=at,
        source="shop",
        source_id=event_id,
        summary=_summary(kind, order, currency, refund),
        data=_data(
            order, currency, rejected=rejected, resolution=resolution, refund=refund, reason=reason
        ),
    )
    if entry is None:
        raise ConcurrentDuplicate(event_id)

    await customers.emit_resolution(
        session, resolution=resolution, source="shop_order", cause_id=event_id
    )
    message = profile_pb2.PurchaseAttributed(
        customer_id=str(customer.id), kind=_PB_KIND[kind], source_event_id=event_id
    )
    message.order.CopyFrom(order)
    if refund is not None:
        message.refund.CopyFrom(refund)
    await outbox.add(
        session,
        topic=PURCHASES_TOPIC,
        key=str(customer.id),
        message=message,
        event_id=cloudevents.deterministic_id("profile", "purchase", event_id),
    )
    return row

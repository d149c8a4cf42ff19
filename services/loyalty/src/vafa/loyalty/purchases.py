"""The paid orders the club's rules look at (tiers by spend, a referred customer's first
order), kept from profile.purchases.v1. Every write is idempotent by business key (order_ref,
refund id), so the consumers that record them — each with its own group — can both do it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2

_PAID = text(
    "INSERT INTO club_orders (order_ref, customer_id, currency, total_minor, paid_at) "
    "VALUES (:ref, :customer, :currency, :total, :paid_at) ON CONFLICT (order_ref) DO NOTHING"
)
_CANCELLED = text("UPDATE club_orders SET cancelled = true WHERE order_ref = :ref")
_REFUNDED = text(
    "INSERT INTO club_order_refunds (order_ref, refund_id, amount_minor) "
    "VALUES (:ref, :refund_id, :amount) ON CONFLICT DO NOTHING"
)


async def record(
    session: AsyncSession, purchase: profile_pb2.PurchaseAttributed, *, at: datetime
) -> uuid.UUID:
    """Records what a purchase event says about money paid; returns its customer id. Raises
    for an event that cannot be keyed (the consumer dead-letters it)."""
    customer_id = uuid.UUID(purchase.customer_id)
    order = purchase.order
    if not order.order_ref:
        raise ValueError("PurchaseAttributed without an order_ref")
    ref = order.order_ref
    if purchase.kind == profile_pb2.PURCHASE_KIND_PAID:
        await session.execute(
            _PAID,
            {
                "ref": ref,
                "customer": customer_id,
                "currency": (order.total.currency or order.currency).upper(),
                "total": order.total.amount_minor,
                "paid_at": at,
            },
        )
    elif purchase.kind == profile_pb2.PURCHASE_KIND_CANCELLED:
        await session.execute(_CANCELLED, {"ref": ref})
    elif purchase.kind == profile_pb2.PURCHASE_KIND_REFUNDED:
        refund = purchase.refund
        if not refund.refund_id:
            raise ValueError(f"refund of {ref!r} without a refund_id")
        amount = refund.amount.amount_minor or sum(
            line.amount.amount_minor for line in refund.lines
        )
        await session.execute(
            _REFUNDED, {"ref": ref, "refund_id": refund.refund_id, "amount": amount}
        )
    return customer_id

"""Thin handlers: the retention club. A paid purchase (profile's own PurchaseAttributed, kind
PAID) enrols its customer, a polled batch at a time; the worker's periodic job blanks the
payloads of sent one-time-code events."""

import uuid
from datetime import UTC

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.worker import WorkerContext
from vafa.profile.club import service

PURCHASE_TYPES = (profile_pb2.PurchaseAttributed,)


def paid_purchase(env: Envelope) -> service.PaidPurchase | None:
    msg = env.message
    assert isinstance(msg, profile_pb2.PurchaseAttributed), env.type
    if msg.kind != profile_pb2.PURCHASE_KIND_PAID:
        return None
    try:
        customer_id = uuid.UUID(msg.customer_id)
    except ValueError:
        return None
    return service.PaidPurchase(
        customer_id=customer_id, occurred_at=env.time.astimezone(UTC), event_id=env.id
    )


async def on_purchases_batch(session: AsyncSession, envelopes: list[Envelope]) -> None:
    """The kit consumer's batch handler for profile.purchases.v1 (group profile.club)."""
    paid = [p for p in map(paid_purchase, envelopes) if p is not None]
    await service.enrol_purchasers(session, paid)


async def scrub_sent_codes(ctx: WorkerContext) -> None:
    async with ctx.db.sessionmaker() as session, session.begin():
        await service.scrub_sent_codes(session)

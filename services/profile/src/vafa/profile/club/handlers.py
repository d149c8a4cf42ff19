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
FILE_TYPES = (profile_pb2.CustomerMerged, profile_pb2.CustomerUnmerged, profile_pb2.CustomerErased)


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


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def on_file_event(session: AsyncSession, env: Envelope) -> None:
    """profile.customers.v1 (group profile.club.files): the account follows its file through
    merges, unmerges and erasure."""
    msg = env.message
    if isinstance(msg, profile_pb2.CustomerMerged):
        survivor, merged = _uuid(msg.survivor_id), _uuid(msg.merged_id)
        if survivor and merged:
            await service.follow_merge(
                session, survivor_id=survivor, merged_id=merged, merge_id=msg.merge_id or env.id
            )
    elif isinstance(msg, profile_pb2.CustomerUnmerged):
        survivor, restored = _uuid(msg.survivor_id), _uuid(msg.restored_id)
        if survivor and restored:
            await service.follow_unmerge(
                session,
                survivor_id=survivor,
                restored_id=restored,
                merge_id=msg.merge_id or env.id,
            )
    elif isinstance(msg, profile_pb2.CustomerErased):
        erased = _uuid(msg.customer_id)
        if erased:
            await service.follow_erasure(session, customer_id=erased)


async def scrub_sent_codes(ctx: WorkerContext) -> None:
    """Blanks published code payloads; drops stale failure counts."""
    async with ctx.db.sessionmaker() as session, session.begin():
        await service.scrub_sent_codes(session)
        await session.execute(service.PURGE_THROTTLE)

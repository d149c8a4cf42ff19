"""The `loyalty.referrals` consumer: profile's snapshots keep the contacts (self-referral guard)
and open referrals (`referred_by_code`); paid orders complete them; an erasure drops the
contacts; a merge gives the survivor the merged file's codes, referrals, orders, redemptions
and coupons."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler
from vafa.loyalty import purchases
from vafa.loyalty.config import Settings
from vafa.loyalty.referrals import service
from vafa.loyalty.rewards import service as rewards_service

TYPES = [
    profile_pb2.CustomerRegistered,
    profile_pb2.CustomerUpdated,
    profile_pb2.CustomerErased,
    profile_pb2.CustomerMerged,
    profile_pb2.PurchaseAttributed,
]


def referrals_handler(settings: Settings) -> BatchHandler:
    async def on_events(session: AsyncSession, envelopes: list[Envelope]) -> None:
        for env in envelopes:
            msg = env.message
            if isinstance(msg, profile_pb2.CustomerRegistered | profile_pb2.CustomerUpdated):
                customer_id = await service.record_contacts(session, msg.customer)
                if msg.customer.referred_by_code:
                    await service.open_referral(
                        session,
                        referred_id=customer_id,
                        code=msg.customer.referred_by_code,
                        settings=settings,
                    )
            elif isinstance(msg, profile_pb2.PurchaseAttributed):
                customer_id = await purchases.record(session, msg, at=env.time)
                if msg.kind == profile_pb2.PURCHASE_KIND_PAID:
                    await service.on_paid(session, customer_id=customer_id, settings=settings)
            elif isinstance(msg, profile_pb2.CustomerMerged):
                survivor, merged = uuid.UUID(msg.survivor_id), uuid.UUID(msg.merged_id)
                await service.follow_merge(session, survivor_id=survivor, merged_id=merged)
                await rewards_service.follow_merge(session, survivor_id=survivor, merged_id=merged)
            elif isinstance(msg, profile_pb2.CustomerErased):
                await service.forget_contacts(session, customer_id=uuid.UUID(msg.customer_id))
            else:
                raise TypeError(f"not an event for referrals: {env.type}")

    return on_events

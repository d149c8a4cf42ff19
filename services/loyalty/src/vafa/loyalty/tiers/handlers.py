"""The `loyalty.tiers` consumer: points earned (loyalty.events.v1) and purchases
(profile.purchases.v1) raise a member's tier at once. A polled batch records its purchases,
then evaluates its members together (set-based, `service.evaluate`)."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2, profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler
from vafa.loyalty import purchases
from vafa.loyalty.config import Settings
from vafa.loyalty.periods import ShopCalendar
from vafa.loyalty.tiers import service

# PointsAdjusted too: a merge moves points with it, and the survivor's tier counts the merged
# file's earnings (tiers/service.py); an ordinary adjustment changes no measure, so evaluating
# on it does nothing.
TYPES = [loyalty_pb2.PointsEarned, loyalty_pb2.PointsAdjusted, profile_pb2.PurchaseAttributed]


def tiers_handler(settings: Settings) -> BatchHandler:
    cal = ShopCalendar.of(settings)

    async def on_events(session: AsyncSession, envelopes: list[Envelope]) -> None:
        members: list[uuid.UUID] = []
        for env in envelopes:
            msg = env.message
            if isinstance(msg, profile_pb2.PurchaseAttributed):
                members.append(await purchases.record(session, msg, at=env.time))
            elif isinstance(msg, loyalty_pb2.PointsEarned | loyalty_pb2.PointsAdjusted):
                members.append(uuid.UUID(msg.customer_id))
            else:
                raise TypeError(f"not an event for tiers: {env.type}")
        await service.evaluate(session, customer_ids=members, allow_downgrade=False, cal=cal)

    return on_events

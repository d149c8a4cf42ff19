"""Thin handlers: decode a profile event, call the points service."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import Handler
from vafa.loyalty.config import Settings
from vafa.loyalty.points import service


def purchase_handlers(settings: Settings) -> dict[type, Handler]:
    rates = settings.points_per_unit

    async def on_purchase(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, profile_pb2.PurchaseAttributed)
        await service.apply_purchase(session, purchase=msg, rates=rates)

    return {profile_pb2.PurchaseAttributed: on_purchase}


def customer_handlers() -> dict[type, Handler]:
    async def on_registered(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, profile_pb2.CustomerRegistered)
        await service.open_account(session, customer_id=uuid.UUID(msg.customer.customer_id))

    return {profile_pb2.CustomerRegistered: on_registered}

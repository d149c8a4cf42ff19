"""Batch handlers: a polled batch's new events, in log order, applied as one unit of work.

Every event is read and checked before anything is written, so a broken one raises: the
consumer rolls the batch back and replays it one event at a time, and the broken event alone
ends in the dead-letter topic."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler
from vafa.loyalty.config import Settings
from vafa.loyalty.points import rules, store

PURCHASE_TYPES = [profile_pb2.PurchaseAttributed]
CUSTOMER_TYPES = [profile_pb2.CustomerRegistered]


def purchases_handler(settings: Settings) -> BatchHandler:
    rates = settings.points_per_unit

    async def on_purchases(session: AsyncSession, envelopes: list[Envelope]) -> None:
        purchases = []
        for env in envelopes:
            msg = env.message
            if not isinstance(msg, profile_pb2.PurchaseAttributed):
                raise TypeError(f"not a PurchaseAttributed: {env.type}")
            purchases.append(rules.read_purchase(msg, rates=rates))
        await store.apply_purchases(session, purchases, [env.traceparent for env in envelopes])

    return on_purchases


def customers_handler() -> BatchHandler:
    async def on_registered(session: AsyncSession, envelopes: list[Envelope]) -> None:
        ids = []
        for env in envelopes:
            msg = env.message
            if not isinstance(msg, profile_pb2.CustomerRegistered):
                raise TypeError(f"not a CustomerRegistered: {env.type}")
            ids.append(uuid.UUID(msg.customer.customer_id))
        await store.open_accounts(session, ids)

    return on_registered

"""Batch handlers: a polled batch's new events, in log order, applied as one unit of work.

Every event is read and checked before anything is written, so a broken one raises: the
consumer rolls the batch back and replays it one event at a time, and the broken event alone
ends in the dead-letter topic."""

import uuid
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler
from vafa.loyalty.config import Settings
from vafa.loyalty.points import members, rules, store
from vafa.loyalty.points.rules import InteractionEvent
from vafa.loyalty.points.store import Policy

PURCHASE_TYPES = [profile_pb2.PurchaseAttributed]
CUSTOMER_TYPES = [
    profile_pb2.CustomerRegistered,
    profile_pb2.CustomerUpdated,
    profile_pb2.InteractionRecorded,
    profile_pb2.CustomerMerged,
    profile_pb2.CustomerErased,
]


def purchases_handler(settings: Settings) -> BatchHandler:
    policy = Policy.of(settings)

    async def on_purchases(session: AsyncSession, envelopes: list[Envelope]) -> None:
        purchases = []
        for env in envelopes:
            msg = env.message
            if not isinstance(msg, profile_pb2.PurchaseAttributed):
                raise TypeError(f"not a PurchaseAttributed: {env.type}")
            # The event's own time, so a replay scores it with the same rule versions.
            purchases.append(rules.read_purchase(msg, at=env.time))
        await store.apply_purchases(
            session, purchases, [env.traceparent for env in envelopes], policy=policy
        )

    return on_purchases


def customers_handler(settings: Settings | None = None) -> BatchHandler:
    """Registrations and updates (accounts, birth dates), interactions (points), merges and
    erasures, in log order: runs of interactions go through the ledger together; a merge or
    an erasure applies after what came before it."""
    policy = Policy.of(settings or Settings())

    async def on_customers(session: AsyncSession, envelopes: list[Envelope]) -> None:
        steps: list[tuple[str, Any]] = []
        for env in envelopes:
            msg = env.message
            if isinstance(msg, profile_pb2.CustomerRegistered | profile_pb2.CustomerUpdated):
                cid = uuid.UUID(msg.customer.customer_id)
                steps.append(("dates", (cid, members.parse_birth_date(msg.customer.birth_date))))
            elif isinstance(msg, profile_pb2.InteractionRecorded):
                steps.append(("interaction", rules.read_interaction(msg, at=env.time)))
            elif isinstance(msg, profile_pb2.CustomerMerged):
                if not msg.merge_id:
                    raise ValueError("CustomerMerged without a merge_id")
                steps.append(
                    ("merge", (uuid.UUID(msg.survivor_id), uuid.UUID(msg.merged_id), msg.merge_id))
                )
            elif isinstance(msg, profile_pb2.CustomerErased):
                steps.append(("erase", uuid.UUID(msg.customer_id)))
            else:
                raise TypeError(f"unexpected event: {env.type}")

        dates: dict[uuid.UUID, date | None] = {}
        interactions: list[InteractionEvent] = []

        async def flush() -> None:
            await members.set_birth_dates(session, dates)
            await store.apply(session, interactions, policy=policy)
            dates.clear()
            interactions.clear()

        for kind, value in steps:
            if kind == "dates":
                cid, born = value
                dates[cid] = born
            elif kind == "interaction":
                interactions.append(value)
            elif kind == "merge":
                await flush()
                survivor, merged, merge_id = value
                await members.merge(
                    session, survivor_id=survivor, merged_id=merged, merge_id=merge_id
                )
            else:
                await flush()
                await members.erase(session, customer_id=value)
        await flush()

    return on_customers

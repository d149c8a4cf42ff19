"""Thin handlers: loyalty points movements onto the customer's timeline, a polled batch at a
time (two statements per batch)."""

from datetime import UTC

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2
from vafa.kit.cloudevents import Envelope
from vafa.profile.timeline import service

LOYALTY_TYPES = (loyalty_pb2.PointsEarned, loyalty_pb2.PointsReversed)


def points_movement(env: Envelope) -> service.PointsMovement:
    msg = env.message
    assert isinstance(msg, loyalty_pb2.PointsEarned | loyalty_pb2.PointsReversed)
    earned = isinstance(msg, loyalty_pb2.PointsEarned)
    occurred_at = (
        msg.occurred_at.ToDatetime(tzinfo=UTC) if msg.HasField("occurred_at") else env.time
    )
    return service.PointsMovement(
        kind="points.earned" if earned else "points.reversed",
        customer_id=msg.customer_id,
        points=msg.points,
        balance=msg.balance,
        reason=msg.reason,
        order_ref=msg.order_ref,
        entry_id=msg.entry_id,
        occurred_at=occurred_at,
        source_id=env.id,
    )


async def on_points_batch(session: AsyncSession, envelopes: list[Envelope]) -> None:
    """The kit consumer's batch handler for loyalty.events.v1."""
    await service.record_points_many(session, [points_movement(env) for env in envelopes])

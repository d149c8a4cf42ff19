"""Thin handlers: loyalty points movements onto the customer's timeline."""

from datetime import UTC

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import loyalty_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import Handler
from vafa.profile.timeline import service


def loyalty_handlers() -> dict[type, Handler]:
    async def on_points(session: AsyncSession, env: Envelope) -> None:
        msg = env.message
        assert isinstance(msg, loyalty_pb2.PointsEarned | loyalty_pb2.PointsReversed)
        earned = isinstance(msg, loyalty_pb2.PointsEarned)
        occurred_at = (
            msg.occurred_at.ToDatetime(tzinfo=UTC) if msg.HasField("occurred_at") else env.time
        )
        await service.record_points(
            session,
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

    return {loyalty_pb2.PointsEarned: on_points, loyalty_pb2.PointsReversed: on_points}

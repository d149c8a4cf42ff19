"""The batch handlers are set-based: the statements a batch costs do not grow with the number
of events in it (counted on the real connection, not timed)."""

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import inventory_pb2, loyalty_pb2, profile_pb2
from vafa.kit.cloudevents import Envelope
from vafa.segmentation.config import Settings
from vafa.segmentation.features.handlers import (
    catalog_handler,
    customers_handler,
    loyalty_handler,
    purchases_handler,
)

from .features_fixtures import NOW, envelope, line, order, purchase, registered, ts

SETTINGS = Settings()


@contextmanager
def counting(session: AsyncSession) -> Iterator[list[str]]:
    statements: list[str] = []
    engine = session.get_bind()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def cost(session: AsyncSession, handler: Callable[..., Any], events: list[Envelope]) -> int:
    with counting(session) as statements:
        await handler(session, events)
    return len(statements)


def purchases(n: int) -> list[Envelope]:
    out = []
    for i in range(n):
        c = uuid.uuid4()
        o = order(
            f"sb:{uuid.uuid4().hex}",
            1000 + i,
            placed_at=NOW - timedelta(days=i),
            lines=[line("1", f"S{i}", 600), line("2", "S", 400 + i)],
        )
        out += [purchase(c, "placed", o), purchase(c, "paid", o)]
        if i % 3 == 0:
            out.append(purchase(c, "refunded", o, refund_id=f"r{i}", refund=100))
    return out


def customers(n: int) -> list[Envelope]:
    out = []
    for i in range(n):
        c = uuid.uuid4()
        out.append(registered(c, city="کرج", emails=[f"c{i}@example.com"], tags=["x"]))
        out.append(
            envelope(
                profile_pb2.ConsentChanged(
                    customer_id=str(c),
                    consent=profile_pb2.Consent(
                        channel=profile_pb2.CONSENT_CHANNEL_SMS, granted=True
                    ),
                )
            )
        )
        out.append(envelope(profile_pb2.InteractionRecorded(customer_id=str(c), kind="call")))
    return out


def loyalty(n: int) -> list[Envelope]:
    out = []
    for i in range(n):
        c = str(uuid.uuid4())
        out += [
            envelope(loyalty_pb2.PointsEarned(customer_id=c, points=i, balance=i)),
            envelope(loyalty_pb2.TierChanged(customer_id=c, tier="gold")),
            envelope(loyalty_pb2.CouponRedeemed(customer_id=c, coupon_code="C")),
        ]
    return out


def catalog(n: int) -> list[Envelope]:
    run = uuid.uuid4().hex[:6]
    return [
        envelope(
            inventory_pb2.ProductUpserted(
                sku=f"S{i}", brand=f"b{i}-{run}", category="c", updated_at=ts(NOW)
            )
        )
        for i in range(n)
    ]


async def test_statements_do_not_grow_with_the_batch(session: AsyncSession) -> None:
    for handler, make in (
        (purchases_handler(SETTINGS, clock=lambda: NOW), purchases),
        (customers_handler(SETTINGS, clock=lambda: NOW), customers),
        (loyalty_handler(SETTINGS, clock=lambda: NOW), loyalty),
        (catalog_handler(SETTINGS, clock=lambda: NOW), catalog),
    ):
        await handler(session, make(1))  # warm-up: first-use queries of the connection
        small = await cost(session, handler, make(1))
        large = await cost(session, handler, make(40))
        assert small == large, (make.__name__, small, large)
        assert large <= 10, (make.__name__, large)

from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, inventory_pb2, shop_orders_pb2
from vafa.inventory.models import StockMovement
from vafa.inventory.stock import batch, service
from vafa.inventory.stock.rules import Reserve
from vafa.inventory.stock.schemas import StockStatus
from vafa.kit import cloudevents

T = 5


def order(ref: str, *lines: tuple[str, str, int]) -> shop_orders_pb2.Order:
    return shop_orders_pb2.Order(
        order_ref=ref,
        currency="USD",
        total=common_pb2.Money(amount_minor=1000, currency="USD"),
        line_items=[
            shop_orders_pb2.LineItem(line_id=lid, sku=sku, quantity=q) for lid, sku, q in lines
        ],
    )


async def apply(session: AsyncSession, message: Message) -> None:
    """One shop order event through the worker's path (a batch of one)."""
    env = cloudevents.decode(*cloudevents.encode(message, source="/test"))
    await batch.apply_order_events(session, [env], default_threshold=T)


async def record_sale(session: AsyncSession, o: shop_orders_pb2.Order, **_: int) -> None:
    await apply(session, shop_orders_pb2.OrderPaid(order=o))


async def record_cancellation(session: AsyncSession, o: shop_orders_pb2.Order, **_: int) -> None:
    await apply(session, shop_orders_pb2.OrderCancelled(order=o))


async def record_refund(
    session: AsyncSession, o: shop_orders_pb2.Order, r: shop_orders_pb2.Refund, **_: int
) -> None:
    await apply(session, shop_orders_pb2.OrderRefunded(order=o, refund=r))


async def ledger_sum(session: AsyncSession, sku: str) -> int:
    return int(
        (
            await session.execute(
                select(func.coalesce(func.sum(StockMovement.delta), 0)).where(
                    StockMovement.sku == sku
                )
            )
        ).scalar_one()
    )


async def outbox_messages(session: AsyncSession, key: str) -> list[Message]:
    rows = (
        await session.execute(
            text("SELECT headers, payload FROM outbox WHERE key = :key ORDER BY id"), {"key": key}
        )
    ).all()
    return [
        cloudevents.decode([(k, v.encode()) for k, v in r.headers], r.payload).message for r in rows
    ]


async def count(
    session: AsyncSession, sku: str, on_hand: int, threshold: int | None = None
) -> None:
    await service.set_level(
        session,
        sku=sku,
        on_hand=on_hand,
        low_stock_threshold=threshold,
        reason="count",
        author="t",
        default_threshold=T,
    )


async def test_set_level_records_a_movement_and_events(session: AsyncSession) -> None:
    item = await service.set_level(
        session,
        sku="BOOK-1",
        on_hand=12,
        low_stock_threshold=None,
        reason="count",
        author="staff:a",
        default_threshold=T,
    )
    assert item.on_hand == 12
    assert await ledger_sum(session, "BOOK-1") == 12
    changed, status = await outbox_messages(session, "BOOK-1")
    assert isinstance(changed, inventory_pb2.StockChanged)
    assert (changed.on_hand, changed.delta, changed.status, changed.reason, changed.note) == (
        12,
        12,
        inventory_pb2.STOCK_STATUS_IN_STOCK,
        "correction",
        "count",
    )
    assert isinstance(status, inventory_pb2.StockStatusChanged)
    assert (status.previous, status.status) == (
        inventory_pb2.STOCK_STATUS_OUT_OF_STOCK,
        inventory_pb2.STOCK_STATUS_IN_STOCK,
    )


async def test_placed_holds_paid_sells_once_and_unknown_skus_move_nothing(
    session: AsyncSession,
) -> None:
    await count(session, "A", 10)
    o = order("shopify:s:1", ("1", "A", 3), ("2", "UNKNOWN", 1), ("3", "", 2))
    await apply(session, shop_orders_pb2.OrderPlaced(order=o))
    item = await service.get_item(session, "A")
    assert item is not None and (item.on_hand, item.reserved) == (10, 3)
    await record_sale(session, o)
    await record_sale(session, o)  # paid delivered twice
    await apply(session, shop_orders_pb2.OrderPlaced(order=o))  # placed redelivered late
    item = await service.get_item(session, "A")
    assert item is not None and (item.on_hand, item.reserved) == (7, 0)
    assert await service.get_item(session, "UNKNOWN") is None
    assert await ledger_sum(session, "A") == 7


async def test_paid_without_a_hold_reserves_and_confirms(session: AsyncSession) -> None:
    await count(session, "P", 4)
    await record_sale(session, order("shopify:s:p", ("1", "P", 3)))
    item = await service.get_item(session, "P")
    assert item is not None and (item.on_hand, item.reserved) == (1, 0)
    kinds = (
        await session.execute(
            text("SELECT reason FROM stock_movements WHERE order_ref = 'shopify:s:p' ORDER BY id")
        )
    ).scalars()
    assert list(kinds) == ["reserve", "sale"]


async def test_cancellation_releases_exactly_what_the_hold_took(session: AsyncSession) -> None:
    await count(session, "B", 4)
    o = order("woo:s:9", ("1", "B", 2), ("2", "B", 1))
    await apply(session, shop_orders_pb2.OrderPlaced(order=o))
    other = order("woo:s:11", ("1", "B", 1))
    await apply(session, shop_orders_pb2.OrderPlaced(order=other))
    await record_cancellation(session, o)
    await record_cancellation(session, o)
    never_placed = order("woo:s:10", ("1", "B", 2))
    await record_cancellation(session, never_placed)
    # A placed event after its cancellation holds nothing.
    await apply(session, shop_orders_pb2.OrderPlaced(order=never_placed))
    item = await service.get_item(session, "B")
    assert item is not None and (item.on_hand, item.reserved) == (4, 1)  # the other's hold
    assert await ledger_sum(session, "B") == 4


async def test_cancelling_a_paid_order_returns_its_units(session: AsyncSession) -> None:
    await count(session, "B2", 5)
    o = order("woo:s:12", ("1", "B2", 2))
    await apply(session, shop_orders_pb2.OrderPlaced(order=o))
    await record_sale(session, o)
    await record_cancellation(session, o)
    await record_cancellation(session, o)
    item = await service.get_item(session, "B2")
    assert item is not None and (item.on_hand, item.reserved) == (5, 0)


async def test_an_order_beyond_the_stock_is_held_short_never_below_zero(
    session: AsyncSession,
) -> None:
    await count(session, "S", 2)
    o = order("shopify:s:short", ("1", "S", 5))
    await apply(session, shop_orders_pb2.OrderPlaced(order=o))
    await record_sale(session, o)
    item = await service.get_item(session, "S")
    assert item is not None and (item.on_hand, item.reserved) == (0, 0)
    msgs = await outbox_messages(session, "S")
    short = [m for m in msgs if isinstance(m, inventory_pb2.ReservationShort)]
    assert [(m.requested, m.allocated) for m in short] == [(5, 2)]
    line = (
        await session.execute(
            text("SELECT requested, allocated FROM reservation_lines WHERE order_ref = :r"),
            {"r": "shopify:s:short"},
        )
    ).one()
    assert tuple(line) == (5, 2)
    alerts = [m for m in msgs if isinstance(m, inventory_pb2.LowStockAlert)]
    assert [a.status for a in alerts] == [inventory_pb2.STOCK_STATUS_OUT_OF_STOCK]


async def test_refund_restocks_only_restock_lines_once(session: AsyncSession) -> None:
    await count(session, "C", 5)
    o = order("shopify:s:2", ("1", "C", 3))
    await record_sale(session, o)
    refund = shop_orders_pb2.Refund(
        refund_id="r1",
        lines=[
            shop_orders_pb2.RefundLine(line_id="1", sku="C", quantity=1, restock=True),
            shop_orders_pb2.RefundLine(line_id="1b", sku="C", quantity=1, restock=False),
        ],
    )
    await record_refund(session, o, refund)
    await record_refund(session, o, refund)
    item = await service.get_item(session, "C")
    assert item is not None and item.on_hand == 3
    # Cancelled afterwards: only the units the refund did not already return come back.
    await record_cancellation(session, o)
    item = await service.get_item(session, "C")
    assert item is not None and item.on_hand == 5


def test_status_thresholds() -> None:
    assert service.status_of(0, 5) is StockStatus.out_of_stock
    assert service.status_of(-2, 5) is StockStatus.out_of_stock
    assert service.status_of(5, 5) is StockStatus.low_stock
    assert service.status_of(6, 5) is StockStatus.in_stock


async def test_an_api_hold_is_the_one_the_order_events_confirm(session: AsyncSession) -> None:
    await count(session, "H", 5)
    ref = "shopify:s:api-then-events"
    expires = datetime.now(UTC) + timedelta(minutes=15)
    await batch.apply(
        session, [Reserve(ref, [("H", 2)], expires, strict=True)], default_threshold=T
    )
    o = order(ref, ("1", "H", 2))
    await apply(session, shop_orders_pb2.OrderPlaced(order=o))  # finds the hold: no change
    item = await service.get_item(session, "H")
    assert item is not None and (item.on_hand, item.reserved) == (5, 2)
    await record_sale(session, o)
    item = await service.get_item(session, "H")
    assert item is not None and (item.on_hand, item.reserved) == (3, 0)
    state = (
        await session.execute(
            text("SELECT state FROM reservations WHERE order_ref = :r"), {"r": ref}
        )
    ).scalar_one()
    assert state == "confirmed"


async def test_a_cancelled_order_whose_hold_expired_is_not_sold_by_a_late_payment(
    session: AsyncSession,
) -> None:
    await count(session, "E", 4)
    o = order("shopify:s:expired-cancelled", ("1", "E", 2))
    placed = shop_orders_pb2.Order()
    placed.CopyFrom(o)
    placed.placed_at.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    await apply(session, shop_orders_pb2.OrderPlaced(order=placed))
    assert await batch.expire_holds(session, default_threshold=T) == 1
    await record_cancellation(session, o)
    await record_sale(session, o)  # the payment arrives after all: nothing is taken
    item = await service.get_item(session, "E")
    assert item is not None and (item.on_hand, item.reserved) == (4, 0)
    state = (
        await session.execute(
            text("SELECT state FROM reservations WHERE order_ref = :r"), {"r": o.order_ref}
        )
    ).scalar_one()
    assert state == "released"


async def test_a_count_below_a_hold_never_lets_the_sale_go_below_zero(
    session: AsyncSession,
) -> None:
    await count(session, "K", 5)
    o = order("shopify:s:counted-short", ("1", "K", 4))
    await apply(session, shop_orders_pb2.OrderPlaced(order=o))
    await count(session, "K", 1)  # the shelf has one left, whatever was held
    await record_sale(session, o)
    item = await service.get_item(session, "K")
    assert item is not None and (item.on_hand, item.reserved) == (0, 0)
    assert await ledger_sum(session, "K") == 0
    short = [
        m
        for m in await outbox_messages(session, "K")
        if isinstance(m, inventory_pb2.ReservationShort)
    ]
    assert [(m.requested, m.allocated) for m in short] == [(4, 1)]

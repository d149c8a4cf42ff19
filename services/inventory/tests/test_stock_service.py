from google.protobuf.message import Message
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import common_pb2, inventory_pb2, shop_orders_pb2
from vafa.inventory.models import StockMovement
from vafa.inventory.stock import batch, service
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


async def test_set_level_records_a_movement_and_an_event(session: AsyncSession) -> None:
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
    rows = (
        await session.execute(text("SELECT headers, payload FROM outbox WHERE key = 'BOOK-1'"))
    ).all()
    assert len(rows) == 1
    env = cloudevents.decode([(k, v.encode()) for k, v in rows[0].headers], rows[0].payload)
    assert isinstance(env.message, inventory_pb2.StockChanged)
    assert (env.message.on_hand, env.message.delta, env.message.status) == (
        12,
        12,
        inventory_pb2.STOCK_STATUS_IN_STOCK,
    )


async def test_sale_moves_known_skus_once_and_ignores_unknown(session: AsyncSession) -> None:
    await service.set_level(
        session,
        sku="A",
        on_hand=10,
        low_stock_threshold=None,
        reason="count",
        author="t",
        default_threshold=T,
    )
    o = order("shopify:s:1", ("1", "A", 3), ("2", "UNKNOWN", 1), ("3", "", 2))
    await record_sale(session, o, default_threshold=T)
    await record_sale(session, o, default_threshold=T)  # paid after placed: same lines
    item = await service.get_item(session, "A")
    assert item is not None and item.on_hand == 7
    assert await service.get_item(session, "UNKNOWN") is None
    assert await ledger_sum(session, "A") == 7


async def test_cancellation_returns_exactly_what_the_sale_took(session: AsyncSession) -> None:
    await service.set_level(
        session,
        sku="B",
        on_hand=4,
        low_stock_threshold=None,
        reason="count",
        author="t",
        default_threshold=T,
    )
    o = order("woo:s:9", ("1", "B", 2), ("2", "B", 1))
    await record_sale(session, o, default_threshold=T)
    await record_cancellation(session, o, default_threshold=T)
    await record_cancellation(session, o, default_threshold=T)
    never_sold = order("woo:s:10", ("1", "B", 2))
    await record_cancellation(session, never_sold, default_threshold=T)
    item = await service.get_item(session, "B")
    assert item is not None and item.on_hand == 4
    assert await ledger_sum(session, "B") == 4


async def test_refund_restocks_only_restock_lines(session: AsyncSession) -> None:
    await service.set_level(
        session,
        sku="C",
        on_hand=5,
        low_stock_threshold=None,
        reason="count",
        author="t",
        default_threshold=T,
    )
    o = order("shopify:s:2", ("1", "C", 3))
    await record_sale(session, o, default_threshold=T)
    refund = shop_orders_pb2.Refund(
        refund_id="r1",
        lines=[
            shop_orders_pb2.RefundLine(line_id="1", sku="C", quantity=1, restock=True),
            shop_orders_pb2.RefundLine(line_id="1b", sku="C", quantity=1, restock=False),
        ],
    )
    await record_refund(session, o, refund, default_threshold=T)
    await record_refund(session, o, refund, default_threshold=T)
    item = await service.get_item(session, "C")
    assert item is not None and item.on_hand == 3


def test_status_thresholds() -> None:
    assert service.status_of(0, 5) is StockStatus.out_of_stock
    assert service.status_of(-2, 5) is StockStatus.out_of_stock
    assert service.status_of(5, 5) is StockStatus.low_stock
    assert service.status_of(6, 5) is StockStatus.in_stock

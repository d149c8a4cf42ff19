"""inventory.catalog.v1: ProductUpserted, a polled batch in one statement."""

from datetime import UTC

from sqlalchemy.ext.asyncio import AsyncSession

from vafa.events.v1 import inventory_pb2
from vafa.kit.cloudevents import Envelope
from vafa.kit.consumer import BatchHandler
from vafa.loyalty.products.service import ProductRow, upsert

PRODUCT_TYPES = [inventory_pb2.ProductUpserted]


def products_handler() -> BatchHandler:
    async def on_products(session: AsyncSession, envelopes: list[Envelope]) -> None:
        rows = []
        for env in envelopes:
            msg = env.message
            if not isinstance(msg, inventory_pb2.ProductUpserted):
                raise TypeError(f"not a ProductUpserted: {env.type}")
            if not msg.sku:
                raise ValueError("ProductUpserted without a sku")
            rows.append(
                ProductRow(
                    sku=msg.sku,
                    product_id=msg.product_id,
                    name=msg.name,
                    brand=msg.brand,
                    category=msg.category,
                    tags=list(msg.tags),
                    active=msg.active,
                    updated_at=msg.updated_at.ToDatetime(tzinfo=UTC)
                    if msg.HasField("updated_at")
                    else env.time,
                )
            )
        await upsert(session, rows)

    return on_products

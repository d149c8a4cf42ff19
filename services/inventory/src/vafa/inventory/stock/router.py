from typing import Annotated

from fastapi import APIRouter, Path, Request

from vafa.inventory.models import StockItem
from vafa.inventory.stock import service
from vafa.inventory.stock.schemas import StockRead, StockUpdate
from vafa.kit.auth import Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound

router = APIRouter(prefix="/v1/products", tags=["inventory"])

Sku = Annotated[str, Path(min_length=1, max_length=128, description="The shop's SKU.")]


def _read(item: StockItem, default_threshold: int) -> StockRead:
    threshold = service.threshold_of(item, default_threshold)
    return StockRead(
        sku=item.sku,
        on_hand=item.on_hand,
        status=service.status_of(item.on_hand, threshold),
        low_stock_threshold=threshold,
        updated_at=item.updated_at,
    )


@router.get("/{sku}/stock", response_model=StockRead, summary="Stock level and status of a SKU")
async def get_stock(sku: Sku, session: SessionDep, request: Request, _: StaffRead) -> StockRead:
    item = await service.get_item(session, sku)
    if item is None:
        raise NotFound(f"No stock is recorded for SKU {sku!r}.", sku=sku)
    return _read(item, request.app.state.settings.default_low_stock_threshold)


@router.put("/{sku}/stock", response_model=StockRead, summary="Set the counted stock of a SKU")
async def put_stock(
    sku: Sku,
    body: StockUpdate,
    session: SessionDep,
    request: Request,
    principal: Annotated[Principal, require("shop")],
) -> StockRead:
    threshold = request.app.state.settings.default_low_stock_threshold
    item = await service.set_level(
        session,
        sku=sku,
        on_hand=body.on_hand,
        low_stock_threshold=body.low_stock_threshold,
        reason=body.reason,
        author=principal.header_value(),
        default_threshold=threshold,
    )
    await session.commit()
    await session.refresh(item)
    return _read(item, threshold)

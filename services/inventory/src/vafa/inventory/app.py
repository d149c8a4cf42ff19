from fastapi import FastAPI

from vafa.inventory.config import Settings
from vafa.inventory.stock.router import router as stock_router
from vafa.kit.app import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Vafa inventory",
        description="Product catalogue and stock per SKU, moved by shop order events.",
        routers=[stock_router],
    )

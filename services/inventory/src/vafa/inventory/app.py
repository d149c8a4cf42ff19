from fastapi import FastAPI

from vafa.inventory.catalog.router import router as catalog_router
from vafa.inventory.config import Settings
from vafa.inventory.locations.router import router as locations_router
from vafa.inventory.reservations.router import router as reservations_router
from vafa.inventory.stock.router import router as stock_router
from vafa.kit.app import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Vafa inventory",
        description="Product catalogue, stock per location, reservations and availability, "
        "moved by shop order events and staff movements.",
        # The stock router first: its /v1/products/{sku}/stock must win over {sku} routes.
        routers=[stock_router, catalog_router, locations_router, reservations_router],
    )

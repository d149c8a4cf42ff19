from fastapi import FastAPI

from vafa.kit.app import create_service_app
from vafa.ticketing.config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Vafa ticketing",
        description="After-sales tickets, routing and SLAs (its features arrive with the ticketing issue).",
        routers=[],
    )

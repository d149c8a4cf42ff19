from fastapi import FastAPI

from vafa.kit.app import create_service_app
from vafa.messaging.config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Vafa messaging",
        description="SMS and email channels, templates, campaigns and the delivery log (its features arrive with the messaging issue).",
        routers=[],
    )

from fastapi import FastAPI

from vafa.kit.app import create_service_app
from vafa.segmentation.config import Settings
from vafa.segmentation.scores.router import router as scores_router


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Vafa segmentation",
        description="Segments and the per-customer feature store (its features arrive with the segmentation issue).",
        routers=[scores_router],
    )

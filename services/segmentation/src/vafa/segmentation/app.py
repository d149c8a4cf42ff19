from fastapi import FastAPI

from vafa.kit.app import create_service_app
from vafa.segmentation.config import Settings
from vafa.segmentation.features.router import router as features_router
from vafa.segmentation.scores.router import router as scores_router
from vafa.segmentation.segments.router import router as segments_router


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Vafa segmentation",
        description="Segments and the per-customer feature store (its features arrive with the segmentation issue).",
        routers=[features_router, segments_router, scores_router],
    )

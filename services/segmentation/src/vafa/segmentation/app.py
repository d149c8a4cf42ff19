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
        description=(
            "The per-customer feature store kept from events, segments with their members and "
            "history, RFM, lifetime value and cluster discovery."
        ),
        routers=[features_router, segments_router, scores_router],
    )

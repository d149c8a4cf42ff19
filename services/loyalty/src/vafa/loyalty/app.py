from fastapi import FastAPI

from vafa.kit.app import create_service_app
from vafa.loyalty.config import Settings
from vafa.loyalty.points.router import router as points_router
from vafa.loyalty.referrals.router import router as referrals_router
from vafa.loyalty.rewards.router import router as rewards_router
from vafa.loyalty.tiers.router import router as tiers_router


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Vafa loyalty",
        description="The club's points ledger: points earned by paid orders, reversed by "
        "cancellations and refunds, adjusted by staff; every balance is the sum of its ledger.",
        routers=[points_router, tiers_router, rewards_router, referrals_router],
    )

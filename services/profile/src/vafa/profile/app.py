from fastapi import FastAPI

from vafa.kit.app import create_service_app
from vafa.profile.attributes.router import router as attributes_router
from vafa.profile.club.router import router as club_router
from vafa.profile.config import Settings
from vafa.profile.consents.router import router as consents_router
from vafa.profile.customers.router import router as customers_router
from vafa.profile.dates.router import router as dates_router
from vafa.profile.duplicates.router import router as duplicates_router
from vafa.profile.imports.router import router as imports_router
from vafa.profile.privacy.router import router as privacy_router
from vafa.profile.search.router import router as search_router
from vafa.profile.timeline.router import router as timeline_router


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        settings or Settings(),
        title="Vafa profile",
        description="Customers and leads, their identities, purchase history and timeline: "
        "the identity authority of the platform.",
        # Search first: its fixed paths (/v1/customers/export, /imports) before /{customer_id}.
        routers=[
            search_router,
            imports_router,
            customers_router,
            timeline_router,
            attributes_router,
            consents_router,
            dates_router,
            duplicates_router,
            privacy_router,
            club_router,
        ],
        openapi_tags=[
            {"name": "customers", "description": "Customer files, lookup and timeline."},
            {
                "name": "club",
                "description": "The club account: sign-up, sign-in, codes, and the member's "
                "own file under /v1/club/me.",
            },
        ],
    )

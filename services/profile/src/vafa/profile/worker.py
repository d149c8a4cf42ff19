import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import Periodic, Subscription, WorkerContext, run_worker
from vafa.profile.club.handlers import (
    FILE_TYPES,
    PURCHASE_TYPES,
    on_file_event,
    on_purchases_batch,
    scrub_sent_codes,
)
from vafa.profile.config import Settings
from vafa.profile.dates import service as dates
from vafa.profile.duplicates import service as duplicates
from vafa.profile.imports.handlers import import_pending
from vafa.profile.orders.handlers import ORDER_TYPES, order_batch_handler
from vafa.profile.timeline.handlers import LOYALTY_TYPES, on_points_batch


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)
    orders = Subscription(
        "profile.orders",
        ["shop.orders.v1"],
        batch_handler=order_batch_handler(settings),
        types=ORDER_TYPES,
    )
    points = Subscription(
        "profile.loyalty", ["loyalty.events.v1"], batch_handler=on_points_batch, types=LOYALTY_TYPES
    )
    # The retention club: profile's own paid purchases enrol their customers.
    club = Subscription(
        "profile.club",
        ["profile.purchases.v1"],
        batch_handler=on_purchases_batch,
        types=PURCHASE_TYPES,
    )
    # The club account follows its file through merges, unmerges and erasure.
    club_files = Subscription(
        "profile.club.files",
        ["profile.customers.v1"],
        handlers={t: on_file_event for t in FILE_TYPES},
    )
    await run_worker(
        settings,
        subscriptions=[orders, points, club, club_files],
        periodic=[
            Periodic(
                "profile.effective-dates",
                settings.effective_date_scan_seconds,
                announce_effective_dates,
            ),
            Periodic("profile.duplicates", settings.duplicate_scan_seconds, scan_for_duplicates),
            Periodic("profile.scrub-sent-codes", 5.0, scrub_sent_codes),
            Periodic("profile.imports", 2.0, import_pending),
        ],
        stop=stop,
    )


async def announce_effective_dates(ctx: WorkerContext) -> None:
    """EffectiveDateUpcoming for the dates in the look-ahead window, once per occurrence."""
    settings = ctx.settings
    assert isinstance(settings, Settings)
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    async with ctx.db.sessionmaker() as session, session.begin():
        await dates.announce_upcoming(
            session, today=today, days=settings.effective_date_lookahead_days
        )


async def scan_for_duplicates(ctx: WorkerContext) -> None:
    """Near-duplicates of the files opened or changed lately (two intervals back, so a slow run
    leaves no gap; pairs already queued are not queued again)."""
    settings = ctx.settings
    assert isinstance(settings, Settings)
    since = datetime.now().astimezone() - timedelta(seconds=2 * settings.duplicate_scan_seconds)
    async with ctx.db.sessionmaker() as session, session.begin():
        await duplicates.scan_recent(
            session, since=since, threshold=settings.duplicate_name_similarity
        )

import asyncio

from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import run_worker
from vafa.segmentation.config import Settings
from vafa.segmentation.features import handlers as features_handlers
from vafa.segmentation.features import jobs as features_jobs
from vafa.segmentation.scores import jobs as scores_jobs


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    assert isinstance(settings, Settings)
    await run_worker(
        settings,
        subscriptions=[*features_handlers.subscriptions(settings)],
        periodic=[*features_jobs.periodic(settings), *scores_jobs.periodic(settings)],
        stop=stop,
    )

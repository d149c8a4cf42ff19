import asyncio

from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import run_worker
from vafa.segmentation.config import Settings
from vafa.segmentation.scores import jobs as scores_jobs


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    # No consumers yet: the worker relays the outbox so the service's events flow from day one.
    assert isinstance(settings, Settings)
    await run_worker(settings, periodic=[*scores_jobs.periodic(settings)], stop=stop)

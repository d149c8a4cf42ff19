import asyncio

from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import run_worker
from vafa.segmentation.config import Settings
from vafa.segmentation.segments import jobs as segments_jobs


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    # No consumers yet: the worker relays the outbox so the service's events flow from day one.
    assert isinstance(settings, Settings)
    await run_worker(settings, periodic=[*segments_jobs.periodic(settings)], stop=stop)

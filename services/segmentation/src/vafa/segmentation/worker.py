import asyncio

from vafa.kit.settings import ServiceSettings
from vafa.kit.worker import run_worker


async def main(settings: ServiceSettings, stop: asyncio.Event | None = None) -> None:
    # No consumers yet: the worker relays the outbox so the service's events flow from day one.
    await run_worker(settings, stop=stop)

"""`python -m vafa.<service> api|worker|migrate`: the same three commands for every service."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vafa.kit.settings import ServiceSettings


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    settings: Callable[..., ServiceSettings]
    # "vafa.<name>.app:create_app", an app factory for uvicorn.
    app_factory: str
    # async (settings, stop) -> None; stop=None means: stop on SIGTERM/SIGINT.
    worker: Callable[[ServiceSettings, asyncio.Event | None], Coroutine[Any, Any, None]]
    # services/<name>: holds alembic.ini and migrations/.
    service_dir: Path


USAGE = "usage: python -m vafa.{name} api | worker | migrate"


def main(spec: ServiceSpec, argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else ""
    settings = spec.settings()
    if command == "api":
        import uvicorn

        uvicorn.run(
            spec.app_factory,
            factory=True,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            loop="uvloop",
            http="httptools",
        )
    elif command == "worker":
        import uvloop

        uvloop.run(spec.worker(settings, None))
    elif command == "migrate":
        from vafa.kit.migrations import upgrade

        upgrade(spec.service_dir, settings.database_url)
    else:
        print(USAGE.format(name=spec.name), file=sys.stderr)
        sys.exit(2)

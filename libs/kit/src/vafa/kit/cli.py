"""`python -m vafa.<service> api|worker|migrate`: the same three commands for every service,
plus any operator commands a service adds (`python -m vafa.loyalty reconcile`)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
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
    # Extra operator commands: name -> async (settings, args) -> exit code.
    commands: Mapping[str, Callable[[ServiceSettings, list[str]], Coroutine[Any, Any, int]]] = (
        field(default_factory=dict)
    )


USAGE = "usage: python -m vafa.{name} api | worker | migrate{extra}"


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
    elif command in spec.commands:
        sys.exit(asyncio.run(spec.commands[command](settings, args[1:])))
    else:
        extra = "".join(f" | {c}" for c in spec.commands)
        print(USAGE.format(name=spec.name, extra=extra), file=sys.stderr)
        sys.exit(2)

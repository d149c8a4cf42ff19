"""The service command line: the three standard commands plus a service's own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from vafa.kit.cli import ServiceSpec, main
from vafa.kit.settings import ServiceSettings


async def _no_worker(settings: ServiceSettings, stop: asyncio.Event | None) -> None:
    return None


def spec(seen: list[list[str]]) -> ServiceSpec:
    async def reconcile(settings: ServiceSettings, args: list[str]) -> int:
        seen.append(args)
        return 3

    return ServiceSpec(
        name="demo",
        settings=ServiceSettings,
        app_factory="unused:create_app",
        worker=_no_worker,
        service_dir=Path("."),
        commands={"reconcile": reconcile},
    )


def test_a_service_command_runs_with_its_arguments_and_exit_code() -> None:
    seen: list[list[str]] = []
    with pytest.raises(SystemExit) as exit_:
        main(spec(seen), ["reconcile", "--limit", "5"])
    assert exit_.value.code == 3
    assert seen == [["--limit", "5"]]


def test_an_unknown_command_prints_usage_with_the_service_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(spec([]), ["nonsense"])
    assert exit_.value.code == 2
    assert "api | worker | migrate | reconcile" in capsys.readouterr().err

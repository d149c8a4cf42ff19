"""Gateway tests: the real platform payloads in /work/shared/fixtures/webhooks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = (Path(__file__).parents[2] / "../shared/fixtures/webhooks").resolve()


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The real platform payloads (see SOURCES.md there). Missing is a failure, not a skip."""
    if not FIXTURES.is_dir():
        pytest.fail(f"the webhook fixtures are missing: {FIXTURES} does not exist", pytrace=False)
    return FIXTURES


@pytest.fixture(scope="session")
def fixture_bytes(fixture_dir: Path) -> Callable[[str], bytes]:
    def load(name: str) -> bytes:
        path = fixture_dir / name
        if not path.is_file():
            pytest.fail(f"the webhook fixture {path} is missing", pytrace=False)
        return path.read_bytes()

    return load

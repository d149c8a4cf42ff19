"""End-to-end tests: they drive the running stack through the gateway only, as a shop and a
staff member would. `make test` starts (or restarts) the stack before running them; run alone,
they fail with a clear message when it is not up."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from vafa.kit.testing.shop import ShopSimulator

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = Path(os.environ.get("VAFA_STATE_DIR", ROOT / ".local")) / "vafa.env"
GATEWAY = f"http://127.0.0.1:{os.environ.get('VAFA_GATEWAY_PORT', '8000')}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    if not ENV_FILE.exists():
        pytest.fail(
            f"{ENV_FILE} is missing: the stack was never started. Run `make run`.", pytrace=False
        )
    env = {}
    for line in ENV_FILE.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v
    return env


@pytest.fixture(scope="session")
async def gateway(stack_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {stack_env['VAFA_ADMIN_API_KEY']}"}
    async with httpx.AsyncClient(base_url=GATEWAY, headers=headers, timeout=15) as client:
        try:
            ready = await client.get("/readyz")
        except httpx.TransportError as exc:
            pytest.fail(
                f"The gateway at {GATEWAY} is not running ({exc!r}). Run `make run`.", pytrace=False
            )
        if ready.status_code != 200:
            pytest.fail(f"The gateway at {GATEWAY} is not ready: {ready.text}", pytrace=False)
        yield client


@pytest.fixture(scope="session")
def shop(stack_env: dict[str, str]) -> ShopSimulator:
    return ShopSimulator(stack_env, seed=uuid.uuid4().int % 10**6)


@pytest.fixture
def tag() -> str:
    """Unique per test, so tests never see each other's customers, orders or SKUs."""
    return uuid.uuid4().hex[:10]

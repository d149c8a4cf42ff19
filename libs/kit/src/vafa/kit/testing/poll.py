from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, within: float = 20.0, every: float = 0.1, what: str = ""
) -> T:
    """Polls `probe` until it returns something truthy and returns that; fails the test, saying
    what it waited for and the last value seen, when `within` seconds pass. For asserting on
    what asynchronous consumers did, never as a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: T | None = None
    while loop.time() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not within {within:.0f}s: {what or probe!r}; last value: {last!r}")

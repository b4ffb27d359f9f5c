"""The one way tests wait: poll a condition until it holds or a deadline passes, then fail
saying what was awaited and what was last seen. Never sleep to "let things settle"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

POLL = 0.02


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `predicate()` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                 f"(last: {value!r})")
        time.sleep(POLL)


async def wait_for_async(predicate: Callable[[], Any | Awaitable[Any]], timeout: float,
                         what: str) -> Any:
    """The same for async code; `predicate` may be a coroutine function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                 f"(last: {value!r})")
        await asyncio.sleep(POLL)

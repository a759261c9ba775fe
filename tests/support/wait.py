"""``eventually``: the one way a test waits for something (a condition, never a fixed sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT = 15.0
INTERVAL = 0.05


def _expired(started: float, timeout: float, what: str | None, check: object) -> AssertionError | None:
    if time.monotonic() - started <= timeout:
        return None
    return AssertionError(f"timed out after {timeout:g}s waiting for {what or check}")


def eventually(predicate: Callable[[], T], timeout: float = TIMEOUT, interval: float = INTERVAL,
               what: str | None = None) -> T:
    """Call ``predicate`` until it returns something truthy and return that; fail (naming
    ``what``) when ``timeout`` seconds pass first. The predicate runs at least once."""
    started = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        if (error := _expired(started, timeout, what, predicate)) is not None:
            raise error
        time.sleep(interval)


async def eventually_async(predicate: Callable[[], Awaitable[T]], timeout: float = TIMEOUT,
                           interval: float = INTERVAL, what: str | None = None) -> T:
    """:func:`eventually` inside an event loop: awaits ``predicate()``, and lets the loop run
    (other tasks make progress) between the calls."""
    started = time.monotonic()
    while True:
        value = await predicate()
        if value:
            return value
        if (error := _expired(started, timeout, what, predicate)) is not None:
            raise error
        await asyncio.sleep(interval)


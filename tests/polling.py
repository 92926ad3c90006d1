"""Waiting for a condition that comes true on its own (a process stopping, a socket
appearing, a collection finishing). The bound is a number of tries, so that a hang fails
the test instead of stalling it; how fast the condition comes is the benchmarks' business."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def poll_until(check: Callable[[], Any], what: str, tries: int = 500,
               interval: float = 0.02) -> Any:
    """Call check() until it returns something truthy and return that; fail naming `what`.
    check() may itself raise to stop early (a daemon that exited, say)."""
    for _ in range(tries):
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: still not so after {tries} tries")


async def settle(check: Callable[[], Any], tries: int = 100, interval: float = 0.05) -> Any:
    """The same for async tests, without raising: returns check()'s last value, truthy or not,
    for the caller's assertion."""
    value = check()
    for _ in range(tries):
        if value:
            break
        await asyncio.sleep(interval)
        value = check()
    return value

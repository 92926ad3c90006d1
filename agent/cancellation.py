"""Work that must not stop half-way because the call that asked for it was cancelled.

grpc.aio cancels a handler when its client hangs up or its deadline passes. A handler that
has sent a request to the supervisor must still learn what came of it: the supervisor goes
on and makes the process, and an agent that stopped listening would lose track of it (a
running exec it no longer knows, or a record that blocks its id for good)."""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

T = TypeVar("T")


async def finish(aw: Awaitable[T]) -> tuple[T, bool]:
    """Await aw to its end even if the caller is cancelled meanwhile. Returns its result and
    whether the caller was cancelled; an error of aw is raised as usual."""
    inner = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            return await asyncio.shield(inner), cancelled
        except asyncio.CancelledError:
            if inner.done():  # aw itself was cancelled (the loop is closing)
                raise
            cancelled = True
            # Taken in: timeouts in the rest of this task must not count it as cancelling.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()


async def uncancellable(aw: Awaitable[T]) -> T:
    """aw awaited to its end; then the caller's cancellation, if any, is raised."""
    result, cancelled = await finish(aw)
    if cancelled:
        raise asyncio.CancelledError()
    return result

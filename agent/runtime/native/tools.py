"""Running host tools (criu) from the event loop: in a worker thread, with the standard
library's subprocess, which closes every descriptor of the agent in the child (uvloop's spawn
leaves some open) and execs without running fork handlers."""

from __future__ import annotations

import asyncio
import subprocess


async def run_tool(argv: list[str], timeout: float | None = None,
                   merge_output: bool = False) -> subprocess.CompletedProcess:
    """Run argv to its end; stdout (and stderr, merged or apart) are captured as bytes.
    Raises subprocess.TimeoutExpired (the tool killed) past the timeout."""
    return await asyncio.to_thread(
        subprocess.run, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_output else subprocess.PIPE, timeout=timeout,
        close_fds=True, check=False)

"""CRIU, as the native runtime uses it: found once, checked once, and the command lines for
dumping a task and restoring one.

The check runs at start, in the background; until it has passed, and whenever it failed,
Checkpoint and restore answer FAILED_PRECONDITION with the reason (the runtime plugin's
introspection exports show it too)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from agent.errors import FailedPrecondition
from agent.runtime.native.tools import run_tool

log = logging.getLogger(__name__)

# CRIU's own sanity check can take a second or two on a cold cache.
CHECK_TIMEOUT = 60.0
MIN_VERSION = (4, 1)  # kernels from 6.13 on need 4.1 or newer


@dataclass
class Criu:
    path: str = ""
    version: str = ""
    ready: bool = False
    reason: str = "the CRIU check has not finished yet"
    _task: asyncio.Task | None = field(default=None, repr=False)

    def start_check(self, configured: str, exports: dict[str, str]) -> None:
        self._task = asyncio.ensure_future(self._check(configured, exports))

    async def _check(self, configured: str, exports: dict[str, str]) -> None:
        self.path = configured or shutil.which("criu") or ""
        if not self.path or not os.access(self.path, os.X_OK):
            self._fail(f"criu was not found ({configured or 'not in PATH'}); install CRIU 4.1 "
                       "or newer and set criu_path", exports)
            return
        try:
            out = await _run([self.path, "--version"])
            m = re.search(r"Version:\s*(\d+)\.(\d+)(?:\.(\d+))?", out)
            self.version = ".".join(g for g in (m.groups() if m else ()) if g) or "unknown"
            if m and (int(m.group(1)), int(m.group(2))) < MIN_VERSION:
                self._fail(f"criu {self.version} at {self.path} is too old for this kernel "
                           "(4.1 or newer is needed)", exports)
                return
            await _run([self.path, "check"])
        except _Failed as e:
            self._fail(f"`{self.path} check` failed: {e}", exports)
            return
        self.ready = True
        self.reason = ""
        exports["criu"] = f"{self.version} ({self.path}): ok"
        log.info("CRIU %s at %s works", self.version, self.path)

    def _fail(self, reason: str, exports: dict[str, str]) -> None:
        self.ready = False
        self.reason = reason
        exports["criu"] = f"unavailable: {reason}"
        log.info("checkpoint and restore are unavailable: %s", reason)

    async def require(self) -> str:
        """The criu path, once the check has passed (waiting for it if it still runs)."""
        if self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if not self.ready:
            raise FailedPrecondition(f"checkpoint/restore unavailable: {self.reason}")
        return self.path


class _Failed(Exception):
    pass


async def _run(argv: list[str]) -> str:
    try:
        proc = await run_tool(argv, timeout=CHECK_TIMEOUT, merge_output=True)
    except subprocess.TimeoutExpired:
        raise _Failed(f"no answer in {CHECK_TIMEOUT:.0f}s") from None
    text = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise _Failed(text.splitlines()[-1] if text else f"exit status {proc.returncode}")
    return text

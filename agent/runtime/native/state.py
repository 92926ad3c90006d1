"""Each task's record on disk (`<state>/<namespace>/<id>/task.json`): what the agent needs
to take a task back after a restart. Written whole and renamed into place, so a crash
leaves either the old record or the new one."""

from __future__ import annotations

import os
from typing import Any

import orjson

RECORD = "task.json"


def write(bundle: str, record: dict[str, Any]) -> None:
    tmp = os.path.join(bundle, f".{RECORD}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, orjson.dumps(record))
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(bundle, RECORD))


def read(bundle: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(bundle, RECORD), "rb") as f:
            return orjson.loads(f.read())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None


def process_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (start time in clock ticks): with the pid it identifies a
    process across pid reuse. 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    # The command name may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    return int(rest[19]) if len(rest) > 19 else 0

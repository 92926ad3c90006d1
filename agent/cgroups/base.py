"""The interface both cgroup managers (v1 and v2) implement, and what they share."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from abc import ABC, abstractmethod

from agent.cgroups.resources import Resources
from agent.errors import FailedPrecondition, Internal, InvalidArgument

FREEZE_TIMEOUT = 2.0
EMPTY_TIMEOUT = 5.0


def read_text(path: str) -> str:
    # Plain descriptors: cgroup files are small, and a file object costs more than the read.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def write_text(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_pids(path: str) -> list[int]:
    try:
        with open(path) as f:
            return [int(line) for line in f.read().split()]
    except FileNotFoundError:
        return []


class Writes:
    """A batch of cgroup file writes applied in order. With rollback (an update), the files
    already written get their previous values back on the first failure, so an update is all
    or nothing; without (a new cgroup, removed whole when its creation fails), the previous
    values are not read at all."""

    def __init__(self, rollback: bool = True) -> None:
        self.rollback = rollback
        self.items: list[tuple[str, str, str]] = []  # (path, value, what)

    def add(self, path: str, value: str, what: str) -> None:
        self.items.append((path, value, what))

    def apply(self) -> None:
        done: list[tuple[str, str]] = []
        for path, value, what in self.items:
            old = ""
            try:
                if self.rollback:
                    old = read_text(path).strip()
                write_text(path, value)
            except OSError as e:
                self._rollback(done)
                if e.errno == errno.ENOENT:
                    raise FailedPrecondition(f"cannot set {what}: {path}: {e.strerror}") from None
                raise _write_error(what, value, path, e) from None
            if self.rollback:
                done.append((path, old))

    @staticmethod
    def _rollback(done: list[tuple[str, str]]) -> None:
        for _ in range(2):  # a second pass settles values whose order mattered
            left = []
            for path, old in reversed(done):
                try:
                    write_text(path, old)
                except OSError:
                    left.append((path, old))
            done = list(reversed(left))
            if not done:
                return


def _write_error(what: str, value: str, path: str, e: OSError) -> Exception:
    if e.errno == errno.EBUSY:
        return FailedPrecondition(
            f"the kernel refused {what}={value} (busy: the task uses more than that); "
            "no limit was changed"
        )
    if e.errno in (errno.EINVAL, errno.ERANGE):
        return InvalidArgument(f"the kernel refused {what}={value}: {e.strerror}; "
                               "no limit was changed")
    return Internal(f"writing {what}={value} to {path}: {e.strerror}; no limit was changed")


class Cgroup(ABC):
    """The cgroup of one task, at `path` (relative, e.g. `taskagent/default/web`)."""

    version: int

    def __init__(self, path: str):
        self.path = path.strip("/")

    @abstractmethod
    def create(self, resources: Resources) -> None: ...

    @abstractmethod
    def join_files(self) -> tuple[list[int], int | None]:
        """Open fds a new process uses to join: the `tasks` files it writes itself into
        (v1), or the directory for CLONE_INTO_CGROUP (v2). The caller closes them."""

    @abstractmethod
    def apply(self, resources: Resources, *, update: bool = False) -> None: ...

    @abstractmethod
    def pids(self) -> list[int]: ...

    @abstractmethod
    def _freeze_write(self, frozen: bool) -> None: ...

    @abstractmethod
    def freeze_state(self) -> str:
        """THAWED, FREEZING or FROZEN."""

    @abstractmethod
    def _rmdirs(self) -> None: ...

    @abstractmethod
    def memory_usage(self) -> int: ...

    @abstractmethod
    def stat_dirs(self) -> dict[str, str] | str:
        """What the stats reader reads: v1, a directory per controller; v2, the directory."""

    @abstractmethod
    def freezer_dir(self) -> str:
        """The directory whose freezer stops the task (CRIU freezes it there for a dump)."""

    def controllers(self) -> list[str]:
        """The v1 controllers the task has a cgroup in (CRIU dumps each); none on v2."""
        return []

    async def freeze(self, timeout: float = FREEZE_TIMEOUT) -> None:
        """Freeze every process; a freeze that does not finish in time is undone."""
        self._freeze_write(True)
        deadline = time.monotonic() + timeout
        delay = 0.0002
        while True:
            state = self.freeze_state()
            if state == "FROZEN":
                return
            if time.monotonic() > deadline:
                self._freeze_write(False)
                raise FailedPrecondition(
                    f"freezing cgroup {self.path} did not complete in {timeout}s (state {state}); "
                    "it was thawed again"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
            self._freeze_write(True)

    def thaw(self) -> None:
        self._freeze_write(False)

    def signal_all(self, sig: int) -> None:
        """Send sig to every process. Frozen first so none can fork or exit in between;
        thawed after when it was not frozen before, or when the signal is SIGKILL (on v1 a
        frozen process only dies once thawed)."""
        was_frozen = self.freeze_state() == "FROZEN"
        try:
            self._freeze_write(True)
        except OSError:
            pass
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if not was_frozen or sig == signal.SIGKILL:
            self._freeze_write(False)

    async def delete(self) -> None:
        """Remove the directories; anything still inside is killed first, and waited for."""
        try:
            # Usually the task's processes are all gone: tried at once, without reading the
            # process list first. Directories already missing (a creation cut short by a
            # crash) are skipped.
            self._rmdirs()
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise Internal(f"removing cgroup {self.path}: {e.strerror}") from None
        deadline = time.monotonic() + EMPTY_TIMEOUT
        while self.pids():
            self.signal_all(signal.SIGKILL)
            if time.monotonic() > deadline:
                raise Internal(f"cgroup {self.path} still has processes after SIGKILL")
            await asyncio.sleep(0.005)
        while True:
            try:
                self._rmdirs()
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise Internal(f"removing cgroup {self.path}: {e.strerror}") from None
            await asyncio.sleep(0.005)

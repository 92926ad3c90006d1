"""The runtime interface (containerd's core/runtime): a platform runtime makes tasks; a task
is a container's init process plus its exec processes. The tasks service talks only to
these types; the native runtime implements them."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

UNKNOWN_EXIT_STATUS = 255  # containerd's value when the real status cannot be known


class Status(enum.IntEnum):
    """Same numbers as containerd.v1.types.Status."""

    UNKNOWN = 0
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    PAUSED = 4
    PAUSING = 5


@dataclass(frozen=True)
class Exit:
    pid: int
    status: int
    timestamp_ns: int


@dataclass
class IO:
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False


@dataclass
class Mount:
    type: str
    source: str
    target: str = ""
    options: list[str] = field(default_factory=list)


@dataclass
class CreateOpts:
    spec: dict[str, Any]
    io: IO
    rootfs: list[Mount] = field(default_factory=list)
    runtime: str = ""
    checkpoint: str = ""  # a directory holding a checkpoint image to restore from
    task_options: Any = None


@dataclass
class ProcessState:
    id: str
    pid: int
    status: Status
    io: IO
    exit: Exit | None


@dataclass
class ProcessInfo:
    pid: int
    exec_id: str = ""


class Process(ABC):
    """An init or exec process."""

    id: str

    @abstractmethod
    def state(self) -> ProcessState: ...

    @abstractmethod
    async def start(self) -> int: ...

    @abstractmethod
    async def wait(self) -> Exit: ...

    @abstractmethod
    async def kill(self, signal: int, all: bool = False) -> None: ...

    @abstractmethod
    async def resize_pty(self, width: int, height: int) -> None: ...

    @abstractmethod
    async def close_io(self) -> None: ...

    @abstractmethod
    async def delete(self) -> Exit: ...


class Task(Process):
    """A container's task: its init process and what acts on the whole container."""

    namespace: str

    @abstractmethod
    async def exec(self, exec_id: str, spec: dict[str, Any], io: IO) -> Process: ...

    @abstractmethod
    def process(self, exec_id: str) -> Process: ...

    @abstractmethod
    async def pids(self) -> list[ProcessInfo]: ...

    @abstractmethod
    async def pause(self) -> None: ...

    @abstractmethod
    async def resume(self) -> None: ...

    @abstractmethod
    async def update(self, resources: Any, annotations: dict[str, str]) -> None: ...

    @abstractmethod
    async def checkpoint(self, path: str, options: Any) -> None: ...

    @abstractmethod
    def stats_dirs(self) -> Any: ...


class PlatformRuntime(ABC):
    id: str

    @abstractmethod
    async def create(self, namespace: str, task_id: str, opts: CreateOpts) -> Task: ...

    @abstractmethod
    def get(self, namespace: str, task_id: str) -> Task: ...

    @abstractmethod
    def tasks(self, namespace: str | None) -> list[Task]: ...

    @abstractmethod
    async def delete(self, namespace: str, task_id: str) -> Exit: ...


class TaskMonitor:
    """Watches tasks for events beyond their lifecycle (OOM); the default does nothing."""

    def monitor(self, task: Task, labels: dict[str, str] | None = None) -> None:
        pass

    def stop(self, task: Task) -> None:
        pass

    def before_exit(self, task: Task) -> None:
        """Called as a task's init exits, before its exit is published."""

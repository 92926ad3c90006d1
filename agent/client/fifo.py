"""Client-side stdio fifos, as ctr makes them: a private directory with <id>-stdin,
<id>-stdout and <id>-stderr, opened without blocking and read with the event loop."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile


class FifoSet:
    def __init__(self, name: str = "io", stdin: bool = True, stdout: bool = True,
                 stderr: bool = True, base: str | None = None):
        self.dir = tempfile.mkdtemp(prefix="taskagent-fifo-", dir=base)
        self.stdin = os.path.join(self.dir, f"{name}-stdin") if stdin else ""
        self.stdout = os.path.join(self.dir, f"{name}-stdout") if stdout else ""
        self.stderr = os.path.join(self.dir, f"{name}-stderr") if stderr else ""
        for path in (self.stdin, self.stdout, self.stderr):
            if path:
                os.mkfifo(path, 0o600)
        self._readers: dict[str, int] = {}
        self._writer: int | None = None

    def open_readers(self) -> None:
        """Open the output fifos before the task is created (the agent's opens then meet a
        reader, which is what a client is expected to provide)."""
        for path in (self.stdout, self.stderr):
            if path:
                self._readers[path] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)

    def open_stdin(self) -> int:
        """The write end of stdin; call after Create (the agent holds the read end)."""
        self._writer = os.open(self.stdin, os.O_WRONLY | os.O_CLOEXEC)
        return self._writer

    def close_stdin(self) -> None:
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None

    async def read(self, path: str, sink=None) -> bytes:
        """Read one output fifo to EOF (call after Create). With a sink (a callable taking
        bytes), data is handed over as it comes and b"" is returned."""
        fd = self._readers[path]
        loop = asyncio.get_running_loop()
        chunks: list[bytes] = []
        done = loop.create_future()

        def readable() -> None:
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    return
                if not data:
                    loop.remove_reader(fd)
                    if not done.done():
                        done.set_result(None)
                    return
                if sink is None:
                    chunks.append(data)
                else:
                    sink(data)

        loop.add_reader(fd, readable)
        readable()
        try:
            await done
        finally:
            loop.remove_reader(fd)
        return b"".join(chunks)

    def close(self) -> None:
        self.close_stdin()
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

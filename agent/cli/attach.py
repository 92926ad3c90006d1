"""Attaching a person's terminal to a task or exec: output to our stdout/stderr, stdin
forwarded (raw mode and window size for -t), exit code returned."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from typing import Any

import grpc

from agent.client.fifo import FifoSet


class Session:
    def __init__(self, client: Any, container_id: str, exec_id: str = "",
                 interactive: bool = False, terminal: bool = False):
        self.client = client
        self.container_id = container_id
        self.exec_id = exec_id
        self.interactive = interactive
        self.terminal = terminal
        self.fifos = FifoSet(exec_id or container_id, stdin=interactive, stderr=not terminal)
        self._stdin_watched = False  # stdin forwarded from the event loop
        self._stdin_copy: asyncio.Future | None = None  # or by a thread, when not pollable

    async def run_task(self) -> int:
        self.fifos.open_readers()
        try:
            await self.client.create_task(self.container_id, self.fifos.stdin, self.fifos.stdout,
                                          self.fifos.stderr, self.terminal)
            return await self._attached(lambda: self.client.start(self.container_id),
                                        delete=lambda: self.client.delete_task(self.container_id))
        finally:
            self.fifos.close()

    async def run_exec(self, process: dict) -> int:
        self.fifos.open_readers()
        try:
            await self.client.exec(self.container_id, self.exec_id, process, self.fifos.stdin,
                                   self.fifos.stdout, self.fifos.stderr, self.terminal)
            return await self._attached(
                lambda: self.client.start(self.container_id, self.exec_id),
                delete=lambda: self.client.delete_process(self.container_id, self.exec_id))
        finally:
            self.fifos.close()

    async def _attached(self, start, delete) -> int:
        loop = asyncio.get_running_loop()
        waiter = asyncio.ensure_future(self.client.wait(self.container_id, self.exec_id))
        saved = None
        if self.terminal and sys.stdin.isatty():
            saved = termios.tcgetattr(sys.stdin.fileno())
            tty.setraw(sys.stdin.fileno())
        try:
            try:
                await start()
            except BaseException:
                # As ctr: a process that failed to start is deleted, not left behind.
                waiter.cancel()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await delete()
                raise
            # Read once the process holds the write ends (before that a fifo reads as EOF);
            # our reader fds, open since before Create, keep earlier output buffered.
            outputs = [asyncio.ensure_future(
                self.fifos.read(self.fifos.stdout, _writer(sys.stdout)))]
            if self.fifos.stderr:
                outputs.append(asyncio.ensure_future(
                    self.fifos.read(self.fifos.stderr, _writer(sys.stderr))))
            if self.interactive:
                self._forward_stdin(loop)
            if self.terminal:
                await self._resize()
                loop.add_signal_handler(signal.SIGWINCH,
                                        lambda: asyncio.ensure_future(self._resize()))
            status = await waiter
            await asyncio.gather(*outputs)
        finally:
            if saved is not None:
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
            if self._stdin_watched:
                loop.remove_reader(sys.stdin.fileno())
            if self._stdin_copy is not None:
                self._stdin_copy.cancel()
        await delete()
        return status.exit_status

    def _forward_stdin(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = self.fifos.open_stdin()
        src = sys.stdin.fileno()

        def readable() -> None:
            data = os.read(src, 65536)
            if data:
                _write_all(fd, data)
                return
            loop.remove_reader(src)
            asyncio.ensure_future(self._stdin_eof())

        try:
            loop.add_reader(src, readable)
            self._stdin_watched = True
        except PermissionError:
            # A regular file or /dev/null cannot be watched by epoll: copied by a thread.
            self._stdin_copy = asyncio.ensure_future(self._copy_stdin(src, fd))

    async def _copy_stdin(self, src: int, fd: int) -> None:
        loop = asyncio.get_running_loop()
        while data := await loop.run_in_executor(None, os.read, src, 65536):
            await loop.run_in_executor(None, _write_all, fd, data)
        await self._stdin_eof()

    async def _stdin_eof(self) -> None:
        await self.client.close_stdin(self.container_id, self.exec_id)
        self.fifos.close_stdin()

    async def _resize(self) -> None:
        try:
            size = os.get_terminal_size(sys.stdout.fileno())
        except OSError:
            return
        await self.client.resize(self.container_id, size.columns, size.lines, self.exec_id)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _writer(stream):
    out = stream.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    return write

"""The optional Prometheus endpoint (`[metrics] address = "host:port"`): the agent's own
figures (RPC counts and handling-time histograms by method, tasks by state) and each task's
cgroup figures, in the Prometheus text format at GET /metrics."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable, Iterable

from agent.server.rpcstats import BUCKETS, EXIT_DELIVERY, STATS, RpcStats

log = logging.getLogger(__name__)

# A collector returns its lines, or an awaitable of them (one that reads files off the loop).
Collector = Callable[[], Any]


def rpc_lines() -> Iterable[str]:
    yield "# HELP taskagent_rpc_requests_total RPCs handled, by method."
    yield "# TYPE taskagent_rpc_requests_total counter"
    for method, s in sorted(STATS.methods.items()):
        yield f'taskagent_rpc_requests_total{{method="{method}"}} {s.count}'
    yield "# HELP taskagent_rpc_errors_total RPCs that ended with an error, by method."
    yield "# TYPE taskagent_rpc_errors_total counter"
    for method, s in sorted(STATS.methods.items()):
        yield f'taskagent_rpc_errors_total{{method="{method}"}} {s.errors}'
    yield from _histogram("taskagent_rpc_duration_seconds",
                          "Time the agent spent handling each RPC.", "method", STATS)
    yield from _histogram("taskagent_exit_delivery_seconds",
                          "From a process's exit to the answer of the Wait waiting for it.",
                          "process", EXIT_DELIVERY)


def _histogram(name: str, help_text: str, label: str, stats: RpcStats) -> Iterable[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} histogram"
    for key, s in sorted(stats.methods.items()):
        running = 0
        for bound, n in zip(BUCKETS, s.buckets):
            running += n
            yield f'{name}_bucket{{{label}="{key}",le="{bound}"}} {running}'
        yield f'{name}_bucket{{{label}="{key}",le="+Inf"}} {s.count}'
        yield f'{name}_sum{{{label}="{key}"}} {s.total_ns / 1e9:.9f}'
        yield f'{name}_count{{{label}="{key}"}} {s.count}'


class PrometheusServer:
    def __init__(self, address: str, collectors: list[Collector]):
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"metrics address {address!r} must be host:port")
        self.host = host.strip("[]") or "127.0.0.1"
        self.port = int(port)
        self.collectors = [rpc_lines, *collectors]
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.host, self.port)
        log.info("Prometheus metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def render(self) -> str:
        lines: list[str] = []
        for collect in self.collectors:
            try:
                got = collect()
                lines.extend(await got if inspect.isawaitable(got) else got)
            except Exception:
                log.exception("collecting metrics")
        return "\n".join(lines) + "\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            first = request.split(b"\r\n", 1)[0].split()
            if len(first) >= 2 and first[0] == b"GET" and first[1].split(b"?")[0] == b"/metrics":
                body = (await self.render()).encode()
                head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
            else:
                body = b"not found\n"
                head = b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
            writer.write(head + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError):
            pass
        finally:
            writer.close()

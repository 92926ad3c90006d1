"""Per-method RPC counters and handling-time histograms (served in Prometheus format).

Recording is two dict lookups and a bisect, cheap enough for every call."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Upper bounds in seconds; fine at the low end, where our calls live.
BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001, 0.0015,
    0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
_BUCKETS_NS = tuple(int(b * 1e9) for b in BUCKETS)


@dataclass
class MethodStats:
    count: int = 0
    errors: int = 0
    total_ns: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))


class RpcStats:
    def __init__(self) -> None:
        self.methods: dict[str, MethodStats] = {}

    def record(self, method: str, elapsed_ns: int, failed: bool) -> None:
        s = self.methods.get(method)
        if s is None:
            s = self.methods[method] = MethodStats()
        s.count += 1
        s.total_ns += elapsed_ns
        if failed:
            s.errors += 1
        s.buckets[bisect_left(_BUCKETS_NS, elapsed_ns)] += 1


STATS = RpcStats()
# From a process's recorded exit to the answer of a Wait that was waiting for it (keyed by
# "task" or "exec"): the supervisor's reaping and message, and the agent's resolving.
EXIT_DELIVERY = RpcStats()

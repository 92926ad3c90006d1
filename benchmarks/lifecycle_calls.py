"""Where a lifecycle's time goes, call by call: the client's latency of each of the six calls
against the agent's own handling time for it (its Prometheus histograms), so that what is
left, the gRPC transport on both ends and waiting to be scheduled, shows per call.

Starts our agent alone on a temporary socket (no containerd beside it), runs N lifecycles of
/bin/true through our Python client, prints one line per call, and stops the agent. With
--profile PATH it also samples the agent with py-spy (if installed) and prints the share of
the agent's on-CPU samples spent in our handlers against the event loop and gRPC's own code.

    python -m benchmarks.lifecycle_calls              # 200 lifecycles
    python -m benchmarks.lifecycle_calls -n 300 --profile /tmp/agent.spy
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import uvloop

from agent.client import Client
from benchmarks import daemons, scenarios, stats

CALLS = ("Containers.Create", "Tasks.Create", "Tasks.Start", "Tasks.Wait", "Tasks.Delete",
         "Containers.Delete")


async def lifecycle_calls(client: Client, cid: str, rootfs: str, runc_root: str) -> list[float]:
    """The six calls of scenarios.lifecycle, each timed on its own (seconds)."""
    spec = scenarios.spec_for(cid, ["/bin/true"], rootfs)
    steps = (lambda: client.create_container(cid, spec, runc_root=runc_root),
             lambda: client.create_task(cid), lambda: client.start(cid),
             lambda: client.wait(cid), lambda: client.delete_task(cid),
             lambda: client.delete_container(cid))
    out = []
    for step in steps:
        t0 = time.perf_counter()
        await step()
        out.append(time.perf_counter() - t0)
    return out


def profile_shares(path: str) -> dict[str, float]:
    """From py-spy's raw output: the share of samples under one of our handlers, and the
    share whose innermost Python frame is the event loop's run call (uvloop and grpc's aio
    code are compiled: their time shows there)."""
    total = 0
    kinds: collections.Counter = collections.Counter()
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        if any("interceptor.py" in f for f in frames):
            kinds["our handlers (interceptor and below)"] += n
        elif frames[-1].startswith("Runner.run "):
            kinds["event loop and gRPC (compiled code)"] += n
        elif any(f.startswith("Thread.run ") for f in frames):
            kinds["gRPC's poller thread"] += n
        else:
            kinds["other Python (exit handling, events, gc)"] += n
    return {k: v / total for k, v in kinds.most_common()} if total else {}


async def run(n: int, profile: str | None) -> None:
    base = tempfile.mkdtemp(prefix="bench-calls-")
    spy = None
    ours = None
    try:
        rootfs = daemons.make_rootfs(base)
        ours = daemons.OurAgent("").start()
        ours.wait_settled()
        if profile:
            if not shutil.which("py-spy"):
                print("--profile: py-spy is not installed (pip install py-spy); not profiling")
            else:
                spy = subprocess.Popen(["py-spy", "record", "-p", str(ours.proc.pid), "-r", "1000",
                                        "-f", "raw", "-o", profile, "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await asyncio.sleep(1)
        per_call: list[list[float]] = [[] for _ in CALLS]
        totals = []
        async with Client(ours.address, scenarios.NS) as client:
            before = ours.scrape()
            for i in range(n):
                times = await lifecycle_calls(client, f"calls-{i}", rootfs, ours.runtime_root())
                for j, t in enumerate(times):
                    per_call[j].append(t)
                totals.append(sum(times))
            handling = stats.handling(before, ours.scrape(), scenarios.LIFECYCLE_METHODS)
        if spy:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            spy = None
        print(f"{n} lifecycles of /bin/true, our agent alone; ms, medians "
              "(agent: its histograms, interpolated)")
        print(f"{'call':20s} {'client':>8s} {'agent':>8s} {'rest':>8s}")
        for name, method, samples in zip(CALLS, scenarios.LIFECYCLE_METHODS, per_call):
            client_ms = statistics.median(samples) * 1e3
            agent_ms = handling.get(method, {}).get("p50_ms", float("nan"))
            print(f"{name:20s} {client_ms:8.2f} {agent_ms:8.2f} {client_ms - agent_ms:8.2f}")
        print(f"{'whole lifecycle':20s} {statistics.median(totals) * 1e3:8.2f}")
        if profile and os.path.exists(profile):
            print(f"agent on-CPU samples (py-spy, {profile}):")
            for kind, share in profile_shares(profile).items():
                print(f"  {share * 100:5.1f}%  {kind}")
    finally:
        if spy:
            spy.kill()
            spy.wait()
        if ours:
            ours.stop()
            ours.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", "--rounds", type=int, default=200)
    p.add_argument("--profile", metavar="PATH", help="sample the agent with py-spy into PATH")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("lifecycle_calls: needs root (it runs containers)", file=sys.stderr)
        return 2
    uvloop.run(run(args.rounds, args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The native cgroup-stats reader on real v1 cgroups: one batch read of N tasks.

Creates N task cgroups in each v1 hierarchy the reader uses (memory, cpu, cpuacct, pids,
blkio) under <mount>/taskagent-bench-<random>/, by default each with a sleeping process in it,
then times `cgstats.read_many(1, ...)` over all N (median of --runs), once with the reader's
automatic thread count and once on a single thread, and prints per-task µs and total ms.
Everything it made is removed at the end, also on failure. Needs root and cgroup v1.

    python benchmarks/bench_cgstats.py                # 1000 tasks
    python benchmarks/bench_cgstats.py --quick        # 100 tasks
    python benchmarks/bench_cgstats.py --empty --json out.json
    python benchmarks/bench_cgstats.py --file-costs   # one task's files, one by one (C probe)
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.cgroups.hierarchy import detect
from agent.native import cgstats

CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "blkio")
V2_FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "cgroup_v2" / "full"


def v1_mounts() -> dict[str, str]:
    return {c: m for c, m in detect().v1.items() if c in CONTROLLERS}


def rmdir_retry(path: str) -> None:
    for _ in range(200):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.05)


class Tasks:
    """N task cgroups per hierarchy, optionally each with a sleeping process."""

    def __init__(self, mounts: dict[str, str], n: int):
        name = f"taskagent-bench-{uuid.uuid4().hex[:10]}"
        self.roots = sorted({os.path.join(m, name) for m in mounts.values()})
        self.dirs = [
            {c: os.path.join(m, name, f"t{i}") for c, m in mounts.items()} for i in range(n)
        ]
        self.procs: list[subprocess.Popen] = []

    def create(self, with_procs: bool) -> None:
        for root in self.roots:
            os.mkdir(root)
        for task in self.dirs:
            for d in sorted(set(task.values())):
                os.mkdir(d)
            if with_procs:
                p = subprocess.Popen(["sleep", "3600"])
                self.procs.append(p)
                for d in sorted(set(task.values())):
                    with open(os.path.join(d, "cgroup.procs"), "w") as f:
                        f.write(str(p.pid))

    def remove(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        for task in self.dirs:
            for d in sorted(set(task.values())):
                rmdir_retry(d)
        for root in self.roots:
            rmdir_retry(root)


# The files the v1 reader (_native/cgstats/cgv1.c) opens for one task, in its order, by
# controller. The first blkio file is absent on kernels without CFQ: the reader's failed
# open of it is part of its cost.
V1_FILES = (
    ("pids", ("pids.current", "pids.max")),
    ("cpuacct", ("cpuacct.usage", "cpuacct.stat", "cpuacct.usage_percpu")),
    ("cpu", ("cpu.stat",)),
    ("memory", ("memory.stat",) + tuple(
        f"memory.{kind}{entry}"
        for kind in ("", "memsw.", "kmem.", "kmem.tcp.")
        for entry in ("limit_in_bytes", "usage_in_bytes", "max_usage_in_bytes", "failcnt")
    ) + ("memory.oom_control",)),
    ("blkio", ("blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes",
               "blkio.throttle.io_serviced")),
)


def file_costs(task: dict[str, str], rounds: int) -> int:
    """Compile and run cgroup_file_cost.c over one task's files; prints its table."""
    source = Path(__file__).resolve().parent / "cgroup_file_cost.c"
    with tempfile.TemporaryDirectory(prefix="taskagent-probe-") as tmp:
        exe = os.path.join(tmp, "cgroup_file_cost")
        subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, str(source)], check=True)
        files = [f"{task[c]}:{name}" for c, names in V1_FILES for name in names]
        return subprocess.run([exe, str(rounds)] + files).returncode


def time_batch(version: int, dirs: list, runs: int, threads: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = cgstats.read_many(version, dirs, threads=threads)
        times.append(time.perf_counter() - t0)
        assert len(out) == len(dirs) and all(b is not None for b in out)
    return times


def figures(name: str, n: int, times: list[float]) -> dict:
    med = statistics.median(times)
    row = {
        "case": name,
        "tasks": n,
        "runs": len(times),
        "total_ms": round(med * 1e3, 2),
        "per_task_us": round(med / n * 1e6, 1),
        "min_total_ms": round(min(times) * 1e3, 2),
    }
    print(
        f"{name:34s} {n:5d} tasks  total {row['total_ms']:8.2f} ms (min {row['min_total_ms']:.2f})"
        f"  per task {row['per_task_us']:7.1f} µs"
    )
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", "--tasks", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="100 tasks")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--empty", action="store_true", help="cgroups without a process")
    ap.add_argument("--json", metavar="PATH", help="write the figures here")
    ap.add_argument("--file-costs", action="store_true",
                    help="time each file of one task instead (compiles a C probe with gcc)")
    args = ap.parse_args()
    n = 1 if args.file_costs else 100 if args.quick else args.tasks

    if os.geteuid() != 0:
        print("bench_cgstats: needs root (it makes cgroups)", file=sys.stderr)
        return 2
    mounts = v1_mounts()
    missing = [c for c in CONTROLLERS if c not in mounts]
    if missing:
        print(
            f"bench_cgstats: cgroup v1 hierarchies missing: {', '.join(missing)}", file=sys.stderr
        )
        return 2

    tasks = Tasks(mounts, n)
    rows = []
    try:
        tasks.create(with_procs=not args.empty)
        if args.file_costs:
            print(f"cgroup v1, one task's files, µs each, median of {args.runs * 100} reads")
            return file_costs(tasks.dirs[0], args.runs * 100)
        label = "empty" if args.empty else "1 sleeping process each"
        print(f"cgroup v1, {n} tasks ({label}), {os.cpu_count()} CPUs, median of {args.runs}")
        cgstats.read_many(1, tasks.dirs)  # warm the dentry and inode caches once
        rows.append(
            figures("v1 all controllers, auto threads", n, time_batch(1, tasks.dirs, args.runs, 0))
        )
        rows.append(
            figures("v1 all controllers, 1 thread", n, time_batch(1, tasks.dirs, args.runs, 1))
        )
        for c in CONTROLLERS:
            only = [{c: d[c]} for d in tasks.dirs]
            rows.append(figures(f"v1 {c} only, 1 thread", n, time_batch(1, only, args.runs, 1)))
    finally:
        tasks.remove()
    # Recorded v2 files on a regular filesystem: the parser and encoder, not the kernel.
    v2 = [str(V2_FIXTURE)] * n
    rows.append(figures("v2 recorded files (not cgroupfs)", n, time_batch(2, v2, args.runs, 1)))

    if args.json:
        out = {
            "benchmark": "cgstats",
            "host": platform.node(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "with_processes": not args.empty,
            "results": rows,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

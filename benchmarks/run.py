"""The benchmark harness: every scenario against our agent and, when Debian's containerd and
runc are installed, against containerd + runc in the same run, alternating between them,
through the same Python client.

    python -m benchmarks.run [--quick] [--only a,b] [--out DIR] [--readme]

Writes DIR/results.json (figures + machine description), DIR/*.png (plots, when matplotlib is
installed) and, with --readme, the table in benchmarks/README.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time

import uvloop

from agent.client import Client
from benchmarks import daemons, report, scenarios, stats
from benchmarks.scenarios import NS

QUICK = {"lifecycle_rounds": 40, "floor_rounds": 200, "throughput_seconds": 3.0,
         "exec_rounds": 40, "pause_rounds": 40, "exit_rounds": 20,
         "density_ours": [0, 20, 100], "density_ref": [0, 10], "metrics_rounds": 5,
         "cold_rounds": 3, "tar_quick": True, "restart_tasks": 100, "checkpoint_rounds": 3}
FULL = {"lifecycle_rounds": 200, "floor_rounds": 2000, "throughput_seconds": 10.0,
        "exec_rounds": 200, "pause_rounds": 200, "exit_rounds": 100,
        "density_ours": [0, 100, 1000], "density_ref": [0, 50], "metrics_rounds": 20,
        "cold_rounds": 10, "tar_quick": False, "restart_tasks": 1000, "checkpoint_rounds": 10}


def progress(msg: str) -> None:
    print(f"\r\033[K[bench] {msg}", end="", file=sys.stderr, flush=True)


def machine() -> dict:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.split(
                "\n")[0].strip()
        except OSError:
            return "not installed"

    import grpc

    import agent

    cgroup = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else (
        "hybrid (v1 controllers + v2 tree)" if os.path.isdir("/sys/fs/cgroup/unified") else "v1")
    return {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "cgroup": cgroup,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "taskagent": agent.__version__,
        "containerd": version(["containerd", "--version"]),
        "runc": version(["runc", "--version"]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


class Bench:
    def __init__(self, cfg: dict, rootfs: str, ours: daemons.OurAgent,
                 reference: daemons.Containerd | None, criu: str = ""):
        self.cfg = cfg
        self.criu = criu
        self.rootfs = rootfs
        self.ours = ours
        self.reference = reference
        self.results: dict = {}

    def targets(self):
        out = [self.ours]
        if self.reference is not None:
            out.append(self.reference)
        return out

    async def timed_rounds(self, name: str, rounds: int, call, methods: list[str]) -> dict:
        """Run `call(client, daemon, i)` alternately on each daemon in blocks of 10."""
        samples = {d.name: [] for d in self.targets()}
        handling = None
        clients = {d.name: Client(d.address, NS) for d in self.targets()}
        try:
            before = self.ours.scrape()
            done = 0
            while done < rounds:
                block = min(10, rounds - done)
                for d in self.targets():
                    for i in range(done, done + block):
                        samples[d.name].append(await call(clients[d.name], d, i))
                done += block
                progress(f"{name}: {done}/{rounds}")
            handling = stats.handling(before, self.ours.scrape(), methods)
        finally:
            for c in clients.values():
                await c.close()
        out = {"samples_s": samples, "summary": {k: stats.summary_ms(v) for k, v in samples.items()}}
        if handling:
            out["agent_handling"] = handling
            out["agent_handling_total_mean_ms"] = sum(h["mean_ms"] for h in handling.values())
        return out

    async def lifecycle(self) -> None:
        async def call(client, d, i):
            return await scenarios.lifecycle(client, f"lc-{i}", self.rootfs, d.runtime_root())

        self.results["lifecycle"] = await self.timed_rounds(
            "lifecycle", self.cfg["lifecycle_rounds"], call, scenarios.LIFECYCLE_METHODS)

    async def floor(self) -> None:
        async def call(client, d, i):
            return await scenarios.floor_call(client)

        self.results["floor"] = await self.timed_rounds(
            "transport floor (Version)", self.cfg["floor_rounds"], call, [scenarios.FLOOR_METHOD])

    async def exec(self) -> None:
        clients = {d.name: Client(d.address, NS) for d in self.targets()}
        try:
            for d in self.targets():
                await scenarios.start_sleeper(clients[d.name], "exec-host", self.rootfs,
                                              d.runtime_root())

            async def call(client, d, i):
                return await scenarios.exec_once(client, "exec-host", f"x{i}")

            self.results["exec"] = await self.timed_rounds(
                "exec", self.cfg["exec_rounds"], call, scenarios.EXEC_METHODS)
        finally:
            for d in self.targets():
                await scenarios.stop_and_remove(clients[d.name], "exec-host")
                await clients[d.name].close()

    async def pause(self) -> None:
        clients = {d.name: Client(d.address, NS) for d in self.targets()}
        try:
            for d in self.targets():
                await scenarios.start_sleeper(clients[d.name], "pause-host", self.rootfs,
                                              d.runtime_root())

            async def call(client, d, i):
                return await scenarios.pause_resume(client, "pause-host")

            self.results["pause_resume"] = await self.timed_rounds(
                "pause+resume", self.cfg["pause_rounds"], call, scenarios.PAUSE_METHODS)
        finally:
            for d in self.targets():
                await scenarios.stop_and_remove(clients[d.name], "pause-host")
                await clients[d.name].close()

    async def exit_wait(self) -> None:
        async def call(client, d, i):
            return await scenarios.exit_to_wait(client, f"ew-{i}", self.rootfs, d.runtime_root())

        self.results["exit_to_wait"] = await self.timed_rounds(
            "exit -> wait", self.cfg["exit_rounds"], call, [daemons.EXIT_DELIVERY + "/task"])

    def throughput(self) -> None:
        out: dict = {}
        for n in (1, 8, 32):
            for d in self.targets():
                progress(f"throughput: {n} clients on {d.name}")
                out.setdefault(str(n), {})[d.name] = _throughput(
                    d.address, self.rootfs, d.runtime_root(), n, self.cfg["throughput_seconds"])
        self.results["throughput"] = out


    async def density(self) -> None:
        """PSS of each daemon (agent + supervisor; containerd + shims) with N running sleep
        tasks, and the time of one Metrics call for all of them at each N."""
        out: dict = {}
        for d in self.targets():
            counts = self.cfg["density_ours"] if d is self.ours else self.cfg["density_ref"]
            client = Client(d.address, NS)
            running = 0
            rows = []
            try:
                for n in counts:
                    while running < n:
                        batch = min(8, n - running)
                        await asyncio.gather(*(scenarios.start_sleeper(
                            client, f"dn-{running + i}", self.rootfs, d.runtime_root())
                            for i in range(batch)))
                        running += batch
                        progress(f"density: {running}/{n} tasks on {d.name}")
                    await asyncio.sleep(1.0)  # let start-up allocations settle
                    pss = sum(_pss_kib(pid) for pid in d.pids())
                    times = []
                    for _ in range(self.cfg["metrics_rounds"] if n else 0):
                        t0 = time.perf_counter()
                        got = await client.metrics([])
                        times.append(time.perf_counter() - t0)
                        assert len(got) == n, f"Metrics returned {len(got)} of {n} tasks"
                    rows.append({"tasks": n, "pss_kib": pss,
                                 "metrics": stats.summary_ms(times) if times else None})
            finally:
                progress(f"density: removing {running} tasks on {d.name}")
                for i in range(0, running, 16):
                    await asyncio.gather(*(scenarios.stop_and_remove(client, f"dn-{j}")
                                           for j in range(i, min(i + 16, running))))
                await client.close()
            base = rows[0]["pss_kib"]
            for r in rows:
                r["per_task_kib"] = (r["pss_kib"] - base) / r["tasks"] if r["tasks"] else None
            out[d.name] = rows
        self.results["density"] = out

    def cold_start(self) -> None:
        """Seconds from starting each daemon to its first answered call."""
        out: dict = {}
        for cls in [daemons.OurAgent] + ([daemons.Containerd] if self.reference else []):
            times = []
            for i in range(self.cfg["cold_rounds"]):
                progress(f"cold start: {cls.name} {i + 1}/{self.cfg['cold_rounds']}")
                d = cls()
                try:
                    t0 = time.perf_counter()
                    d.start()
                    asyncio.run(_first_call(d.address))
                    times.append(time.perf_counter() - t0)
                finally:
                    d.stop()
                    d.cleanup()
            out[cls.name] = stats.summary_ms(times)
        self.results["cold_start"] = out

    def tar(self) -> None:
        """Native tar diff/apply against GNU tar on the same tree (benchmarks/bench_tar.py)."""
        progress("tar: building the tree and timing diff/apply against GNU tar")
        result = os.path.join(tempfile.mkdtemp(prefix="bench-tar-"), "tar.json")
        cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "bench_tar.py"),
               "--json", result] + (["--quick"] if self.cfg["tar_quick"] else [])
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(result) as f:
            self.results["tar"] = json.load(f)
        import shutil

        shutil.rmtree(os.path.dirname(result), ignore_errors=True)


    async def restart(self) -> None:
        """Agent restart to serving with N running tasks (ours only: containerd's shims make
        its restart a different thing)."""
        n = self.cfg["restart_tasks"]
        client = Client(self.ours.address, NS)
        running = 0
        try:
            while running < n:
                batch = min(8, n - running)
                await asyncio.gather(*(scenarios.start_sleeper(
                    client, f"rs-{running + i}", self.rootfs, "") for i in range(batch)))
                running += batch
                progress(f"restart: {running}/{n} tasks")
            await client.close()
            progress(f"restart: restarting the agent with {n} tasks")
            seconds = await asyncio.get_running_loop().run_in_executor(None, self.ours.restart)
            client = Client(self.ours.address, NS)
            listed = len(await client.list_tasks())
            assert listed == n, f"{listed} of {n} tasks came back"
            self.results["restart"] = {"tasks": n, "seconds_to_serving": seconds}
        finally:
            progress(f"restart: removing {running} tasks")
            for i in range(0, running, 16):
                await asyncio.gather(*(scenarios.stop_and_remove(client, f"rs-{j}")
                                       for j in range(i, min(i + 16, running))))
            await client.close()

    async def checkpoint(self) -> None:
        """Checkpoint (leave running) and restore of a small container, both daemons, with
        the same client calls; skipped where no working CRIU is found."""
        if not self.criu:
            self.results["checkpoint"] = {"skipped": "no working CRIU on this machine"}
            return
        out: dict = {}
        for d in self.targets():
            client = Client(d.address, NS)
            times: dict[str, list[float]] = {"checkpoint": [], "restore": []}
            try:
                for i in range(self.cfg["checkpoint_rounds"]):
                    progress(f"checkpoint: {d.name} {i + 1}/{self.cfg['checkpoint_rounds']}")
                    cp, rs = await scenarios.checkpoint_restore(client, f"cp{i}", self.rootfs,
                                                                d.runtime_root())
                    times["checkpoint"].append(cp)
                    times["restore"].append(rs)
                out[d.name] = {k: stats.summary_ms(v) for k, v in times.items()}
            except Exception as e:
                detail = e.details() if hasattr(e, "details") else str(e)
                out[d.name] = {"error": str(detail)[:300]}
            finally:
                await client.close()
        self.results["checkpoint"] = out


async def _first_call(address: str) -> None:
    async with Client(address, NS) as client:
        await client.server_version()


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _throughput(address: str, rootfs: str, runc_root: str, clients: int, seconds: float) -> dict:
    """Lifecycles per second with `clients` concurrent clients, spread over processes so the
    client side is not the bottleneck of one Python interpreter."""
    procs = min(clients, 4)
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    deadline = time.time() + 2.0 + procs * 0.5  # all workers start timing together
    with ctx.Pool(procs) as pool:
        results = pool.starmap(_throughput_worker, [
            (address, rootfs, runc_root, k, seconds, deadline, f"t{clients}p{i}")
            for i, k in enumerate(per)])
    count = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return {"lifecycles": count, "errors": errors, "seconds": seconds,
            "per_second": count / seconds}


def _throughput_worker(address, rootfs, runc_root, k, seconds, deadline, prefix):
    async def main():
        client = Client(address, NS)
        done = errors = 0
        await asyncio.sleep(max(0.0, deadline - time.time()))
        end = time.time() + seconds

        async def worker(w):
            nonlocal done, errors
            i = 0
            while time.time() < end:
                try:
                    await scenarios.lifecycle(client, f"{prefix}w{w}i{i}", rootfs, runc_root)
                    done += 1
                except Exception:
                    errors += 1
                i += 1

        await asyncio.gather(*(worker(w) for w in range(k)))
        await client.close()
        return done, errors

    return uvloop.run(main())


SCENARIOS = ["floor", "lifecycle", "throughput", "exit_wait", "exec", "pause", "density",
             "cold_start", "tar", "restart", "checkpoint"]


async def _main(args: argparse.Namespace) -> dict:
    cfg = dict(QUICK if args.quick else FULL)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    base = tempfile.mkdtemp(prefix="bench-")
    rootfs = daemons.make_rootfs(base)
    criu = daemons.working_criu()
    ours = daemons.OurAgent(criu).start()
    reference = daemons.Containerd(criu).start() if daemons.Containerd.available() else None
    bench = Bench(cfg, rootfs, ours, reference, criu)
    try:
        progress("letting both daemons finish starting")
        await asyncio.get_running_loop().run_in_executor(None, ours.wait_settled)
        await asyncio.sleep(2.0)
        for name in SCENARIOS:
            if name not in only:
                continue
            fn = getattr(bench, name)
            if name in ("throughput", "cold_start", "tar"):  # they run their own loops/processes
                await asyncio.get_running_loop().run_in_executor(None, fn)
            else:
                await fn()
        return {"machine": machine(), "quick": args.quick, "config": cfg,
                "reference": reference is not None, "results": bench.results}
    finally:
        progress("stopping daemons\n")
        ours.stop()
        ours.cleanup()
        if reference is not None:
            reference.stop()
            reference.cleanup()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a first look in a few minutes")
    p.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--readme", action="store_true", help="rewrite the table in benchmarks/README.md")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("benchmarks need root (both daemons make namespaces and cgroups)", file=sys.stderr)
        return 1
    # The client side runs on uvloop (as the agent does), the same for both daemons.
    data = uvloop.run(_main(args))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
    table = report.table(data)
    print(table)
    if args.readme:
        report.update_readme(table, data)
    for where in [args.out] + ([report.PLOTS] if args.readme else []):
        try:
            os.makedirs(where, exist_ok=True)
            report.plots(data, where)
        except Exception as e:  # the figures are saved already; plots are a bonus
            print(f"plots into {where} failed: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

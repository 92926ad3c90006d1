"""The native cgroup-stats reader.

v1 runs against real cgroups on this host: a child process (stopped during the read) in a
temporary cgroup per controller, its Metrics compared with the cgroup files read around the
native read. v2 runs against recorded files in tests/data/cgroup_v2/ (this host's v2 tree has
almost no controllers), every field compared with a message built by hand.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
from google.protobuf import json_format

from agent.api.cgroups.v1 import metrics_pb2 as v1pb
from agent.api.cgroups.v2 import metrics_pb2 as v2pb
from agent.cgroups.hierarchy import detect
from agent.native import cgstats
from helpers import with_fifo_dir
from polling import poll_until

U64_MAX = 2**64 - 1
MiB = 1 << 20
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "cgroup_v2")
V1_WANTED = ("memory", "cpu", "cpuacct", "pids", "blkio")
MEMORY_LIMIT = 256 * MiB
MEMSW_LIMIT = 512 * MiB
PIDS_LIMIT = 64
BALLAST = 32 * MiB

# memory.stat key -> MemoryStat field (the names differ only for these)
V1_STAT_RENAMED = {
    "pgpgin": "pg_pg_in",
    "pgpgout": "pg_pg_out",
    "pgfault": "pg_fault",
    "pgmajfault": "pg_maj_fault",
    "hierarchical_memsw_limit": "hierarchical_swap_limit",
}
V1_STAT_FIELDS = [f.name for f in v1pb.MemoryStat.DESCRIPTOR.fields if f.number <= 32]


def v1_stat_key(field: str) -> str:
    """The memory.stat key of a MemoryStat field (total_pg_pg_in -> total_pgpgin)."""
    prefix = "total_" if field.startswith("total_") else ""
    base = field[len(prefix) :]
    return prefix + {v: k for k, v in V1_STAT_RENAMED.items()}.get(base, base)


# Joins the cgroups (the test writes its pid) before it allocates, so the memory is charged
# there; then spends some CPU and does direct I/O, and reports back.
CHILD = r"""
import mmap, os, sys, time
sys.stdin.readline()
ballast = bytearray(int(sys.argv[2]))
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
t = time.process_time()
while time.process_time() - t < 0.2:
    pass
io = "none"
try:
    fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
    buf = mmap.mmap(-1, 1 << 16)
    buf.write(b"x" * (1 << 16))
    for _ in range(4):
        os.write(fd, buf)
    os.close(fd)
    io = "direct"
except OSError:
    pass
print("ready", io, flush=True)
time.sleep(3600)
"""


# -- helpers for v1 ---------------------------------------------------------------------------


def v1_mounts() -> dict[str, str]:
    """controller -> mount point of the v1 hierarchies we read (co-mounted ones share one)."""
    return {c: m for c, m in detect().v1.items() if c in V1_WANTED}


def read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read())


def read_kv(path: str) -> dict[str, int]:
    with open(path) as f:
        return {k: int(v) for k, v in (line.split() for line in f if line.strip())}


def possible_cpus() -> int:
    with open("/sys/devices/system/cpu/possible") as f:
        n = 0
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        return n


def partitions() -> dict[tuple[int, int], str]:
    names: dict[tuple[int, int], str] = {}
    with open("/proc/partitions") as f:
        for line in f.readlines()[2:]:
            parts = line.split()
            if len(parts) == 4:
                names.setdefault((int(parts[0]), int(parts[1])), "/dev/" + parts[3])
    return names


def blkio_entries(path: str) -> list[tuple[str, str, int, int, int]]:
    """A blkio stat file as containerd reads it: (op, device, major, minor, value) per line,
    the bare "Total N" line left out."""
    devs = partitions()
    out = []
    with open(path) as f:
        for line in f:
            fields = line.replace(":", " ").split()
            if not fields or (len(fields) == 2 and fields[0] == "Total"):
                continue
            major, minor = int(fields[0]), int(fields[1])
            op = fields[2] if len(fields) == 4 else ""
            out.append((op, devs.get((major, minor), ""), major, minor, int(fields[-1])))
    return out


def decoded_entries(entries) -> list[tuple[str, str, int, int, int]]:
    return [(e.op, e.device, e.major, e.minor, e.value) for e in entries]


def snapshot(dirs: dict[str, str]) -> dict:
    """Every file the v1 reader uses, parsed in Python."""
    mem, cpu, acct, pids, blk = (dirs.get(c) for c in V1_WANTED)
    s: dict = {
        "memory.stat": read_kv(f"{mem}/memory.stat"),
        "memory.oom_control": read_kv(f"{mem}/memory.oom_control"),
    }
    for module in ("", "memsw.", "kmem.", "kmem.tcp."):
        for name in ("limit_in_bytes", "usage_in_bytes", "max_usage_in_bytes", "failcnt"):
            path = f"{mem}/memory.{module}{name}"
            if os.path.exists(path):
                s[f"memory.{module}{name}"] = read_int(path)
    s["cpuacct.usage"] = read_int(f"{acct}/cpuacct.usage")
    with open(f"{acct}/cpuacct.usage_percpu") as f:
        s["cpuacct.usage_percpu"] = [int(v) for v in f.read().split()]
    s["cpuacct.stat"] = read_kv(f"{acct}/cpuacct.stat")
    s["cpu.stat"] = read_kv(f"{cpu}/cpu.stat")
    s["pids.current"] = read_int(f"{pids}/pids.current")
    with open(f"{pids}/pids.max") as f:
        raw = f.read().strip()
        s["pids.max"] = 0 if raw == "max" else int(raw)
    if blk:
        for name in ("throttle.io_service_bytes", "throttle.io_serviced"):
            s[f"blkio.{name}"] = blkio_entries(f"{blk}/blkio.{name}")
    return s


def between(what: str, got: int, a: int, b: int, slack: int = 0) -> None:
    lo, hi = min(a, b) - slack, max(a, b) + slack
    assert lo <= got <= hi, f"{what}: {got} not within [{lo}, {hi}] (file read {a} then {b})"


def ticks_to_ns(ticks: int) -> int:
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def write(path: str, value: str) -> bool:
    try:
        with open(path, "w") as f:
            f.write(value)
        return True
    except OSError:
        return False


def rmdir_retry(path: str) -> None:
    for _ in range(100):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.05)
    os.rmdir(path)


class V1Task:
    """A stopped child in a temporary cgroup of each v1 controller."""

    def __init__(self, mounts: dict[str, str], workdir: str):
        self.name = f"taskagent-test-{uuid.uuid4().hex[:12]}"
        self.mounts = mounts
        self.roots = sorted({os.path.join(m, self.name) for m in mounts.values()})
        self.dirs = {c: os.path.join(m, self.name, "task") for c, m in mounts.items()}
        self.io_path = os.path.join(workdir, "direct-io")
        self.child: subprocess.Popen | None = None
        self.io_rule = False
        self.io = "none"

    def start(self) -> None:
        for root in self.roots:
            os.mkdir(root)
            os.mkdir(os.path.join(root, "task"))
        mem, cpu, pids, blk = (self.dirs.get(c) for c in ("memory", "cpu", "pids", "blkio"))
        assert write(f"{mem}/memory.limit_in_bytes", str(MEMORY_LIMIT))
        write(f"{mem}/memory.memsw.limit_in_bytes", str(MEMSW_LIMIT))  # needs swap accounting
        assert write(f"{pids}/pids.max", str(PIDS_LIMIT))
        write(f"{cpu}/cpu.cfs_period_us", "100000")
        write(f"{cpu}/cpu.cfs_quota_us", "150000")  # a quota makes cpu.stat count periods
        if blk:
            # blk-throttle counts I/O only for devices with a rule; a generous one.
            st = os.stat(os.path.dirname(self.io_path))
            dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
            self.io_rule = write(f"{blk}/blkio.throttle.write_bps_device", f"{dev} {1 << 40}")
        self.child = subprocess.Popen(
            [sys.executable, "-c", CHILD, self.io_path, str(BALLAST)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for root in self.roots:
            assert write(os.path.join(root, "task", "cgroup.procs"), str(self.child.pid))
        self.child.stdin.write(b"go\n")
        self.child.stdin.flush()
        line = self.child.stdout.readline().split()
        assert line[:1] == [b"ready"], f"child said {line!r}"
        self.io = line[1].decode()
        self.stop()

    def stop(self) -> None:
        os.kill(self.child.pid, signal.SIGSTOP)

        def stopped() -> bool:
            with open(f"/proc/{self.child.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "T"

        poll_until(stopped, "the child stopping")

    def cleanup(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child.wait()
        for root in self.roots:
            rmdir_retry(os.path.join(root, "task"))
            rmdir_retry(root)
        if os.path.exists(self.io_path):
            os.unlink(self.io_path)


@pytest.fixture(scope="module")
def v1_task(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root: the test makes cgroups")
    mounts = v1_mounts()
    if not all(c in mounts for c in ("memory", "cpu", "cpuacct", "pids")):
        pytest.skip(f"needs the v1 memory, cpu, cpuacct and pids hierarchies (found {mounts})")
    task = V1Task(mounts, str(tmp_path_factory.mktemp("cgstats")))
    try:
        task.start()
        yield task
    finally:
        task.cleanup()


# -- v1 ---------------------------------------------------------------------------------------


def test_v1_matches_the_cgroup_files(v1_task):
    dirs = v1_task.dirs
    # The child is stopped, so the counters hold still once the kernel has flushed its
    # per-CPU stats; read until the files agree before and after the native read. If they
    # never do, every value must still lie between the two file reads.
    for _ in range(20):
        before = snapshot(dirs)
        data = cgstats.read_many(1, [dirs])[0]
        after = snapshot(dirs)
        if before == after:
            break
        time.sleep(0.25)
    assert data is not None
    m = v1pb.Metrics.FromString(data)
    assert m.SerializeToString() == data  # canonical: what Go and Python write

    # pids
    assert m.pids.current == before["pids.current"] == 1
    assert m.pids.limit == PIDS_LIMIT

    # cpu
    usage = m.cpu.usage
    between("cpu.usage.total", usage.total, before["cpuacct.usage"], after["cpuacct.usage"])
    assert usage.total >= 100_000_000  # the child spun for 0.2 s of CPU
    assert len(usage.per_cpu) == possible_cpus() == len(before["cpuacct.usage_percpu"])
    for i, v in enumerate(usage.per_cpu):
        between(
            f"per_cpu[{i}]", v, before["cpuacct.usage_percpu"][i], after["cpuacct.usage_percpu"][i]
        )
    between(
        "cpu.usage.user",
        usage.user,
        ticks_to_ns(before["cpuacct.stat"]["user"]),
        ticks_to_ns(after["cpuacct.stat"]["user"]),
    )
    between(
        "cpu.usage.kernel",
        usage.kernel,
        ticks_to_ns(before["cpuacct.stat"]["system"]),
        ticks_to_ns(after["cpuacct.stat"]["system"]),
    )
    thr = m.cpu.throttling
    for field, key in (
        ("periods", "nr_periods"),
        ("throttled_periods", "nr_throttled"),
        ("throttled_time", "throttled_time"),
    ):
        between(
            f"throttling.{field}",
            getattr(thr, field),
            before["cpu.stat"][key],
            after["cpu.stat"][key],
        )
    assert thr.periods > 0  # the quota was on while the child ran

    # memory.stat: all 32 fields
    for field in V1_STAT_FIELDS:
        key = v1_stat_key(field)
        between(
            f"memory.{field}",
            getattr(m.memory, field),
            before["memory.stat"][key],
            after["memory.stat"][key],
        )
    assert m.memory.total_rss + m.memory.total_cache > 0

    # memory entries: limits exact, usage within the kernel's per-CPU charge batches
    slack = 64 * 4096 * (os.cpu_count() or 1)
    for entry_name, module in (
        ("usage", ""),
        ("swap", "memsw."),
        ("kernel", "kmem."),
        ("kernel_tcp", "kmem.tcp."),
    ):
        entry = getattr(m.memory, entry_name)
        assert m.memory.HasField(entry_name)  # ctr dereferences usage; containerd sets all four
        if f"memory.{module}usage_in_bytes" not in before:
            assert entry == v1pb.MemoryEntry()
            continue
        assert entry.limit == before[f"memory.{module}limit_in_bytes"]
        between(
            f"memory.{entry_name}.usage",
            entry.usage,
            before[f"memory.{module}usage_in_bytes"],
            after[f"memory.{module}usage_in_bytes"],
            slack,
        )
        between(
            f"memory.{entry_name}.max",
            entry.max,
            before[f"memory.{module}max_usage_in_bytes"],
            after[f"memory.{module}max_usage_in_bytes"],
            slack,
        )
        between(
            f"memory.{entry_name}.failcnt",
            entry.failcnt,
            before[f"memory.{module}failcnt"],
            after[f"memory.{module}failcnt"],
        )
    assert m.memory.usage.limit == MEMORY_LIMIT
    assert m.memory.usage.usage >= BALLAST
    if "memory.memsw.limit_in_bytes" in before:
        assert m.memory.swap.limit == MEMSW_LIMIT

    oom = m.memory_oom_control
    assert m.HasField("memory_oom_control")
    assert (oom.oom_kill_disable, oom.under_oom, oom.oom_kill) == (
        before["memory.oom_control"]["oom_kill_disable"],
        before["memory.oom_control"]["under_oom"],
        before["memory.oom_control"]["oom_kill"],
    )

    # blkio: this kernel has no CFQ, so the throttle files, as containerd reads them
    if "blkio" in dirs and not os.path.exists(f"{dirs['blkio']}/blkio.io_serviced_recursive"):
        assert (
            decoded_entries(m.blkio.io_service_bytes_recursive)
            == before["blkio.throttle.io_service_bytes"]
        )
        assert (
            decoded_entries(m.blkio.io_serviced_recursive) == before["blkio.throttle.io_serviced"]
        )
        if v1_task.io_rule and v1_task.io == "direct":
            writes = [e for e in m.blkio.io_service_bytes_recursive if e.op == "Write"]
            assert writes and writes[0].value >= 4 << 16
            st = os.stat(os.path.dirname(v1_task.io_path))
            assert (writes[0].major, writes[0].minor) == (os.major(st.st_dev), os.minor(st.st_dev))
            assert writes[0].device == partitions().get((writes[0].major, writes[0].minor), "")


def test_v1_controllers_left_out_are_left_out(v1_task):
    only_memory = {"memory": v1_task.dirs["memory"], "freezer": "/ignored", "cpuset": "/x"}
    m = v1pb.Metrics.FromString(cgstats.read_many(1, [only_memory])[0])
    assert m.HasField("memory") and m.memory.HasField("usage")
    assert m.memory.usage.limit == MEMORY_LIMIT
    # cpu is always there with its usage (ctr dereferences it), empty without cpuacct
    assert m.HasField("cpu") and m.cpu.HasField("usage")
    assert m.cpu.usage == v1pb.CPUUsage()
    assert not m.HasField("pids") and not m.HasField("blkio") and not m.hugetlb

    only_pids = {"pids": v1_task.dirs["pids"]}
    m = v1pb.Metrics.FromString(cgstats.read_many(1, [only_pids])[0])
    assert (m.pids.current, m.pids.limit) == (1, PIDS_LIMIT)
    assert not m.HasField("memory") and not m.HasField("memory_oom_control")


def test_v1_gone_cgroup_is_none_and_the_batch_goes_on(v1_task):
    gone = {c: d + "-gone" for c, d in v1_task.dirs.items()}
    # a cgroup that existed and was removed, in one controller only
    removed = os.path.join(v1_task.mounts["pids"], v1_task.name, "removed")
    os.mkdir(removed)
    os.rmdir(removed)
    half = dict(v1_task.dirs, pids=removed)
    out = cgstats.read_many(1, [v1_task.dirs, gone, half, v1_task.dirs])
    assert out[1] is None and out[2] is None
    for data in (out[0], out[3]):
        assert v1pb.Metrics.FromString(data).pids.current == 1


def test_v1_missing_file_in_a_live_directory_is_an_error(v1_task, tmp_path):
    with pytest.raises(cgstats.CgroupStatsError) as info:
        cgstats.read_many(1, [v1_task.dirs, {"memory": str(tmp_path)}])
    assert info.value.errno == errno.ENOENT
    assert f"{tmp_path}/memory.stat" in str(info.value)


def test_v1_batch_of_1000(v1_task):
    for threads in (0, 1, 3):
        out = cgstats.read_many(1, [v1_task.dirs] * 1000, threads=threads)
        assert len(out) == 1000
        for data in out:
            m = v1pb.Metrics.FromString(data)
            assert m.pids.current == 1 and m.memory.usage.limit == MEMORY_LIMIT


# -- v1 against containerd itself --------------------------------------------------------------


class PrivateContainerd:
    """A containerd of our own (socket, root and state in a temporary directory) and ctr
    bound to it in a namespace of our own, so its cgroups are <mount>/<namespace>/<id>."""

    def __init__(self, base, tools: dict[str, str]):
        self.base, self.tools = base, tools
        self.sock = str(base / "containerd.sock")
        self.ns = f"taskagent-test-{uuid.uuid4().hex[:8]}"
        self.daemon: subprocess.Popen | None = None

    def start(self) -> None:
        config = self.base / "config.toml"
        config.write_text('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n')
        cmd = [
            self.tools["containerd"],
            "--config",
            str(config),
            "--address",
            self.sock,
            "--root",
            str(self.base / "root"),
            "--state",
            str(self.base / "state"),
        ]
        with open(self.base / "containerd.log", "wb") as log:
            self.daemon = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        def listening() -> bool:
            assert self.daemon.poll() is None, f"containerd exited with {self.daemon.returncode}"
            return os.path.exists(self.sock)

        poll_until(listening, "containerd opening its socket", tries=600, interval=0.05)

    def ctr(self, *args: str, check: bool = True) -> str:
        cmd = ["timeout", "-k", "5", "60", self.tools["ctr"], "-a", self.sock, "-n", self.ns]
        r = subprocess.run(cmd + with_fifo_dir(self.sock, args), capture_output=True, text=True,
                           check=False)
        assert r.returncode == 0 or not check, f"ctr {' '.join(args)}: {r.stderr}"
        return r.stdout

    def stop(self, cid: str, mounts: dict[str, str]) -> None:
        if self.daemon is None:
            return
        self.ctr("task", "kill", "-s", "9", cid, check=False)
        self.ctr("task", "rm", "-f", cid, check=False)
        self.ctr("container", "rm", cid, check=False)
        self.daemon.terminate()
        try:
            self.daemon.wait(30)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        # runc makes the cgroup in every hierarchy (name=systemd and the v2 tree too).
        tops = [os.path.join("/sys/fs/cgroup", h) for h in os.listdir("/sys/fs/cgroup")]
        for top in tops + [os.path.join("/sys/fs/cgroup", "unified")]:
            for d in (os.path.join(top, self.ns, cid), os.path.join(top, self.ns)):
                if os.path.isdir(d):
                    rmdir_retry(d)
        # The shim keeps runc's state under its default root, one directory per namespace.
        shutil.rmtree(os.path.join("/run/containerd/runc", self.ns), ignore_errors=True)


def json_numbers(x):
    """Protobuf's JSON writes uint64 as strings, Go's encoding/json (ctr) as numbers."""
    if isinstance(x, dict):
        return {k: json_numbers(v) for k, v in x.items()}
    if isinstance(x, list):
        return [json_numbers(v) for v in x]
    return int(x) if isinstance(x, str) and x.isdigit() else x


@pytest.mark.containerd
def test_v1_same_as_containerd_for_its_own_container(tmp_path, rootfs):
    """A container run by a private containerd, paused: `ctr task metrics --format json`
    (containerd reading the cgroup with its own library) and our reader on the same cgroup
    agree field for field."""
    tools = {t: shutil.which(t) for t in ("containerd", "ctr", "runc")}
    if os.geteuid() != 0 or not all(tools.values()):
        pytest.skip(f"needs root, containerd, ctr and runc (found {tools})")
    mounts = v1_mounts()
    if not all(c in mounts for c in V1_WANTED):
        pytest.skip("needs the cgroup v1 hierarchies")
    cid = "metrics"
    ref = PrivateContainerd(tmp_path, tools)
    try:
        ref.start()
        script = (
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
            "x=$(head -c 4000000 /dev/zero | tr '\\0' a); sleep 1000"
        )
        ref.ctr(
            "run",
            "-d",
            "--memory-limit",
            str(MEMORY_LIMIT),
            "--rootfs",
            rootfs,
            cid,
            "/bin/sh",
            "-c",
            script,
        )
        time.sleep(1.5)
        ref.ctr("task", "pause", cid)
        dirs = {c: os.path.join(mounts[c], ref.ns, cid) for c in V1_WANTED}
        for _ in range(20):  # until no per-CPU stats flush lands between the reads
            theirs = json.loads(ref.ctr("task", "metrics", "--format", "json", cid))
            data = cgstats.read_many(1, [dirs])[0]
            if theirs == json.loads(ref.ctr("task", "metrics", "--format", "json", cid)):
                break
            time.sleep(0.25)
        ours = json_format.MessageToDict(
            v1pb.Metrics.FromString(data), preserving_proto_field_name=True
        )
        assert json_numbers(ours) == theirs
        assert theirs["memory"]["usage"]["limit"] == MEMORY_LIMIT
        assert theirs["cpu"]["usage"]["total"] > 0
    finally:
        ref.stop(cid, mounts)


# -- v2 (recorded files) ----------------------------------------------------------------------


def read_v2(case: str, sizes=("1GB", "2MB")) -> tuple[bytes, v2pb.Metrics]:
    data = cgstats.read_many(2, [os.path.join(DATA, case)], hugetlb_sizes=sizes)[0]
    assert data is not None
    return data, v2pb.Metrics.FromString(data)


def test_v2_every_field():
    data, m = read_v2("full")
    want = v2pb.Metrics(
        pids=v2pb.PidsStat(current=12, limit=1024),
        cpu=v2pb.CPUStat(
            usage_usec=8265362,
            user_usec=6144908,
            system_usec=2120454,
            nr_periods=4012,
            nr_throttled=156,
            throttled_usec=983711,
        ),
        memory=v2pb.MemoryStat(
            anon=48234496,
            file=120532992,
            kernel_stack=294912,
            slab=6123520,
            sock=8192,
            shmem=1081344,
            file_mapped=37695488,
            file_dirty=135168,
            file_writeback=4096,
            anon_thp=20971520,
            inactive_anon=47169536,
            active_anon=1212416,
            inactive_file=84365312,
            active_file=36167680,
            unevictable=65536,
            slab_reclaimable=4386816,
            slab_unreclaimable=1736704,
            pgfault=215853,
            pgmajfault=627,
            workingset_refault=1920,
            workingset_activate=864,
            workingset_nodereclaim=33,
            pgrefill=4102,
            pgscan=12870,
            pgsteal=11935,
            pgactivate=29214,
            pgdeactivate=3988,
            pglazyfree=512,
            pglazyfreed=256,
            thp_fault_alloc=14,
            thp_collapse_alloc=3,
            usage=170414080,
            usage_limit=536870912,
            swap_usage=2097152,
            swap_limit=1073741824,
        ),
        io=v2pb.IOStat(
            usage=[
                v2pb.IOEntry(
                    major=8, minor=16, rbytes=1459200, wbytes=314773504, rios=192, wios=353
                ),
                v2pb.IOEntry(
                    major=8, minor=0, rbytes=90430464, wbytes=299008000, rios=8950, wios=1252
                ),
            ]
        ),
        hugetlb=[v2pb.HugeTlbStat(current=4194304, max=16777216, pagesize="2MB")],
        memory_events=v2pb.MemoryEvents(low=0, high=17, max=42, oom=2, oom_kill=1),
    )
    assert m == want
    assert data == want.SerializeToString()  # byte for byte what protobuf itself writes
    # every MemoryStat field of the proto is covered by the recorded file
    assert all(getattr(m.memory, f.name) for f in v2pb.MemoryStat.DESCRIPTOR.fields)


def test_v2_max_values_and_newer_kernel_keys():
    data, m = read_v2("unlimited")
    want = v2pb.Metrics(
        pids=v2pb.PidsStat(current=3, limit=U64_MAX),
        cpu=v2pb.CPUStat(usage_usec=51203, user_usec=30112, system_usec=21091),
        memory=v2pb.MemoryStat(
            anon=4227072,
            file=19341312,
            kernel_stack=65536,
            slab=1364528,
            sock=0,
            shmem=4096,
            file_mapped=9404416,
            inactive_anon=4214784,
            active_anon=16384,
            inactive_file=14950400,
            active_file=4386816,
            slab_reclaimable=978568,
            slab_unreclaimable=385960,
            pgfault=32981,
            pgmajfault=94,
            # 6.x split workingset_refault/_activate into _anon/_file: 0, as in containerd
            workingset_refault=0,
            workingset_activate=0,
            workingset_nodereclaim=0,
            pgrefill=28,
            pgscan=1311,
            pgsteal=1296,
            pgactivate=1107,
            pgdeactivate=14,
            usage=25174016,
            usage_limit=U64_MAX,
            swap_usage=0,
            swap_limit=U64_MAX,
        ),
        io=v2pb.IOStat(usage=[v2pb.IOEntry(major=254, minor=0, rbytes=9031680, rios=421)]),
        hugetlb=[
            v2pb.HugeTlbStat(current=0, max=U64_MAX, pagesize="1GB"),
            v2pb.HugeTlbStat(current=0, max=U64_MAX, pagesize="2MB"),
        ],
        memory_events=v2pb.MemoryEvents(),
    )
    assert m == want
    assert m.HasField("memory_events")  # the file is there, all zeros
    assert data == want.SerializeToString()


def test_v2_missing_optional_files():
    data, m = read_v2("minimal")
    want = v2pb.Metrics(
        pids=v2pb.PidsStat(current=1, limit=0),
        cpu=v2pb.CPUStat(usage_usec=1204, user_usec=802, system_usec=402),
        memory=v2pb.MemoryStat(usage=1404928),
        io=v2pb.IOStat(),
    )
    assert m == want
    assert m.HasField("pids") and m.HasField("memory") and m.HasField("io")
    assert not m.HasField("memory_events") and not m.hugetlb
    assert data == want.SerializeToString()


def test_v2_hugetlb_sizes_follow_the_argument():
    _, m = read_v2("unlimited", sizes=("2MB",))
    assert [h.pagesize for h in m.hugetlb] == ["2MB"]
    _, m = read_v2("full", sizes=())
    assert not m.hugetlb


def test_v2_gone_is_none_and_errors_name_the_file(tmp_path):
    full = os.path.join(DATA, "full")
    out = cgstats.read_many(2, [full, str(tmp_path / "gone"), full], hugetlb_sizes=())
    assert out[1] is None and out[0] == out[2] and out[0] is not None

    with pytest.raises(cgstats.CgroupStatsError) as info:  # a directory, but not a cgroup
        cgstats.read_many(2, [full, str(tmp_path)])
    assert info.value.errno == errno.ENOENT and f"{tmp_path}/cpu.stat" in str(info.value)

    bad = tmp_path / "bad"
    shutil.copytree(full, bad)
    (bad / "cpu.stat").write_text("usage_usec 12x\n")
    with pytest.raises(cgstats.CgroupStatsError) as info:
        cgstats.read_many(2, [str(bad)])
    assert info.value.errno == errno.EINVAL and "cpu.stat" in str(info.value)


def test_v2_large_file_is_read_whole(tmp_path):
    # io.stat of a host with many disks: larger than the reader's stack buffer
    case = tmp_path / "many-disks"
    shutil.copytree(os.path.join(DATA, "minimal"), case)
    lines = [
        f"8:{i} rbytes={i * 512} wbytes={i} rios={i + 1} wios=2 dbytes=0 dios=0"
        for i in range(1000)
    ]
    (case / "io.stat").write_text("\n".join(lines) + "\n")
    m = v2pb.Metrics.FromString(cgstats.read_many(2, [str(case)], hugetlb_sizes=())[0])
    assert len(m.io.usage) == 1000
    assert m.io.usage[999] == v2pb.IOEntry(
        major=8, minor=999, rbytes=999 * 512, wbytes=999, rios=1000, wios=2
    )


# -- the Python face --------------------------------------------------------------------------


def test_type_urls_and_page_size_names(tmp_path):
    assert cgstats.V1_TYPE_URL == "io.containerd.cgroups.v1.Metrics"
    assert cgstats.V2_TYPE_URL == "io.containerd.cgroups.v2.Metrics"
    assert cgstats.type_url(1) == cgstats.V1_TYPE_URL
    assert cgstats.type_url(2) == cgstats.V2_TYPE_URL
    for name in ("hugepages-2048kB", "hugepages-1048576kB", "hugepages-64kB", "other"):
        (tmp_path / name).mkdir()
    assert cgstats.hugepage_sizes(str(tmp_path)) == ("1GB", "2MB", "64KB")
    assert cgstats.hugepage_sizes(str(tmp_path / "none")) == ()
    assert cgstats.read_many(1, []) == [] and cgstats.read_many(2, []) == []
    with pytest.raises(ValueError):
        cgstats.read_many(3, [])

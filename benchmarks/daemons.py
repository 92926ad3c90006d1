"""The daemons the benchmarks compare: our agent and containerd + runc, each started on a
temporary socket with temporary directories, and stopped (with everything they made) after.
Also the shared rootfs and the scraping of our agent's handling-time metrics."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

RUNTIME_URI = "io.containerd.runtime.v2.native"


def make_rootfs(base: str) -> str:
    """A busybox-static root filesystem both daemons run the same binaries from."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    root = os.path.join(base, "rootfs")
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "run"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2(busybox, os.path.join(root, "bin", "busybox"))
    names = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for name in names.stdout.split():
        if name != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", name))
    return root


def working_criu() -> str:
    """A criu that passes `criu check` here ($TASKAGENT_CRIU, PATH, /opt/criu/criu), or ""."""
    for path in (os.environ.get("TASKAGENT_CRIU", ""), shutil.which("criu") or "",
                 "/opt/criu/criu"):
        if path and os.access(path, os.X_OK) and subprocess.run([path, "check"], capture_output=True).returncode == 0:
            return path
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_socket(path: str, proc: subprocess.Popen, log: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited:\n{open(log).read()[-3000:]}")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    raise RuntimeError(f"nothing serves on {path} after {timeout}s")


EXIT_DELIVERY = "exit-delivery"


class Daemon:
    name = ""
    address = ""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix=f"bench-{self.name}-")
        os.chmod(self.base, 0o711)
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(self.base, "daemon.log")

    def runtime_root(self) -> str:
        return os.path.join(self.base, "runc")

    def pids(self) -> list[int]:
        """The daemon's own processes (for memory figures)."""
        return [self.proc.pid] if self.proc else []

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class OurAgent(Daemon):
    name = "taskagent"

    def __init__(self, criu: str = "") -> None:
        super().__init__()
        self.address = os.path.join(self.base, "run", "agent.sock")
        self.state = os.path.join(self.base, "state")
        self.metrics_port = _free_port()
        self.cgroup_parent = "taskagent-bench-" + os.path.basename(self.base).rsplit("-", 1)[-1]
        self.config = os.path.join(self.base, "config.toml")
        with open(self.config, "w") as f:
            f.write(f'[metrics]\n  address = "127.0.0.1:{self.metrics_port}"\n'
                    f'[plugins."{RUNTIME_URI}"]\n  cgroup_parent = "{self.cgroup_parent}"\n'
                    f'  criu_path = "{criu}"\n')

    def restart(self) -> float:
        """Stop only the agent (its supervisor and containers stay), start it again; returns
        seconds from the new process's start to its first answered call."""
        import asyncio

        from agent.client import Client

        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        t0 = time.perf_counter()
        self.start()

        async def first_call() -> None:
            async with Client(self.address, "bench") as client:
                await client.server_version()

        asyncio.run(first_call())
        return time.perf_counter() - t0

    def start(self) -> "OurAgent":
        os.makedirs(os.path.dirname(self.address), mode=0o700, exist_ok=True)
        cmd = [sys.executable, "-m", "agent", "serve", "--address", self.address, "--root",
               os.path.join(self.base, "root"), "--state", self.state, "--config", self.config,
               "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     cwd=self.base)
        _wait_socket(self.address, self.proc, self.log)
        return self

    def wait_settled(self, timeout: float = 120.0) -> None:
        """Until its start-up work is done (the CRIU check runs after serving begins), so
        that it does not load the machine while figures are taken."""
        deadline = time.monotonic() + timeout
        while "criu" not in self._runtime_exports() and time.monotonic() < deadline:
            time.sleep(0.1)

    def supervisor_pid(self) -> int | None:
        """Read from the runtime plugin's exports, as `ctr plugins ls -d` shows them."""
        sv = self._runtime_exports().get("supervisor_pid")
        return int(sv) if sv else None

    def _runtime_exports(self) -> dict[str, str]:
        import grpc

        from agent.api.containerd.services.introspection.v1 import (
            introspection_pb2,
            introspection_pb2_grpc,
        )

        with grpc.insecure_channel(f"unix://{self.address}") as ch:
            stub = introspection_pb2_grpc.IntrospectionStub(ch)
            resp = stub.Plugins(introspection_pb2.PluginsRequest(filters=["id==native"]),
                                metadata=(("containerd-namespace", "bench"),))
        return dict(resp.plugins[0].exports) if resp.plugins else {}

    def pids(self) -> list[int]:
        out = super().pids()
        sv = self.supervisor_pid()
        return out + ([sv] if sv else [])

    def scrape(self) -> dict[str, tuple[int, float, list[tuple[float, int]]]]:
        """Per method: (count, seconds spent, cumulative histogram buckets)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        out: dict[str, list] = {}
        # RPC handling by method, and exit delivery as the pseudo-method "exit-delivery/<kind>".
        series = (("taskagent_rpc_duration_seconds", 'method="', ""),
                  ("taskagent_exit_delivery_seconds", 'process="', EXIT_DELIVERY + "/"))
        for line in text.splitlines():
            found = [s for s in series if line.startswith(s[0])]
            if not found:
                continue
            prefix, label, key_prefix = found[0]
            name, value = line.rsplit(" ", 1)
            method = key_prefix + name.split(label, 1)[1].split('"', 1)[0]
            entry = out.setdefault(method, [0, 0.0, []])
            if name.startswith(prefix + "_count"):
                entry[0] = int(value)
            elif name.startswith(prefix + "_sum"):
                entry[1] = float(value)
            elif "_bucket" in name:
                le = name.split('le="', 1)[1].split('"', 1)[0]
                entry[2].append((float("inf") if le == "+Inf" else float(le), int(value)))
        return {k: (v[0], v[1], v[2]) for k, v in out.items()}

    def stop(self) -> None:
        super().stop()
        from agent.runtime.native import supervisor

        path = supervisor.socket_path(os.path.join(self.state, RUNTIME_URI))
        if os.path.exists(path):
            supervisor.shutdown_sync(path, force=True)
        for mount in os.listdir("/sys/fs/cgroup"):
            root = os.path.join("/sys/fs/cgroup", mount, self.cgroup_parent)
            for dirpath, _d, _f in sorted(os.walk(root), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass


class Containerd(Daemon):
    """containerd + runc from Debian's packages, on its own socket, root, state and runc root
    (several instances would otherwise share runc's default state root)."""

    name = "containerd"

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("containerd") and shutil.which("runc")
                    and shutil.which("containerd-shim-runc-v2"))

    def __init__(self, criu: str = "") -> None:
        super().__init__()
        self.criu = criu  # runc finds criu in PATH: put a working one first
        self.address = os.path.join(self.base, "containerd.sock")
        self.config = os.path.join(self.base, "config.toml")
        with open(self.config, "w") as f:
            f.write(f'version = 2\nroot = "{self.base}/root"\nstate = "{self.base}/state"\n'
                    f'[grpc]\n  address = "{self.address}"\n'
                    '[plugins."io.containerd.grpc.v1.cri"]\n  disable = true\n')

    def start(self) -> "Containerd":
        env = dict(os.environ)
        if self.criu:
            env["PATH"] = os.path.dirname(self.criu) + ":" + env.get("PATH", "")
        self.proc = subprocess.Popen(["containerd", "--config", self.config],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     cwd=self.base, env=env)
        _wait_socket(self.address, self.proc, self.log)
        return self

    def pids(self) -> list[int]:
        """containerd and its shims."""
        out = super().pids()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and \
                    self.address.encode() in b" ".join(cmd):
                out.append(int(pid))
        return out

    def stop(self) -> None:
        shims = self.pids()[1:]
        super().stop()
        for pid in shims:  # a shim outlives containerd only while it holds a container
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for parent in os.listdir("/sys/fs/cgroup"):
            root = os.path.join("/sys/fs/cgroup", parent, "bench")
            for dirpath, _d, _f in sorted(os.walk(root), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass

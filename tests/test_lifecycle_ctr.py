"""containerd's own ctr, pointed at our socket, runs containers from start to finish."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from helpers import ctr, leftovers, need_ctr

pytestmark = pytest.mark.ctr


@pytest.fixture(autouse=True)
def _ctr_present():
    need_ctr()


def test_run_rm_echo_leaves_nothing(agent, rootfs):
    r = ctr(agent.address, "run", "--rm", "--rootfs", rootfs, "c1", "/bin/echo", "hello")
    assert (r.returncode, r.stdout) == (0, b"hello\n"), r.stderr
    assert ctr(agent.address, "c", "ls", "-q").stdout == b""
    assert ctr(agent.address, "t", "ls", "-q").stdout == b""
    assert leftovers(agent, "default", "c1") == []


def test_run_exit_code(agent, rootfs):
    r = ctr(agent.address, "run", "--rm", "--rootfs", rootfs, "c2", "/bin/sh", "-c", "exit 7")
    assert r.returncode == 7, r.stderr


def test_inside_the_container(agent, rootfs):
    script = ("readlink /proc/self/ns/pid; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
              "ls /proc/self/fd | tr '\\n' ' '; echo; cat /proc/timer_list | wc -c; "
              "mknod /tmp/sda b 8 0 && head -c1 /tmp/sda; echo device=$?")
    r = ctr(agent.address, "run", "--rm", "--rootfs", rootfs, "in1", "/bin/sh", "-c", script)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] != os.readlink("/proc/self/ns/pid")
    assert lines[0].startswith("pid:[")
    assert lines[1] == "/bin/sh -c " + script + " "
    # 0, 1, 2 and the directory ls itself opened: nothing of the agent leaks in.
    assert lines[2].split() == ["0", "1", "2", "3"]
    assert lines[3].strip() == "0"  # masked /proc/timer_list reads empty
    assert lines[4] == "device=1"  # mknod may work; reading a host disk never does


def test_detached_kill_and_remove(agent, rootfs):
    r = ctr(agent.address, "run", "-d", "--rootfs", rootfs, "c3", "/bin/sleep", "1000")
    assert r.returncode == 0, r.stderr
    ls = ctr(agent.address, "t", "ls").stdout.decode().splitlines()
    row = ls[1].split()
    assert row[0] == "c3" and row[2] == "RUNNING"
    pid = int(row[1])
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read() == b"/bin/sleep\x001000\x00"
    assert ctr(agent.address, "t", "kill", "-s", "SIGKILL", "c3").returncode == 0
    for _ in range(100):
        row = ctr(agent.address, "t", "ls").stdout.decode().splitlines()[1].split()
        if row[2] == "STOPPED":
            break
    assert row == ["c3", str(pid), "STOPPED"]
    rm = ctr(agent.address, "t", "rm", "c3")
    assert rm.returncode == 0
    assert b"exit code 137" in rm.stderr
    assert ctr(agent.address, "c", "rm", "c3").returncode == 0
    assert leftovers(agent, "default", "c3", pid) == []


def test_large_output_in_order_20_times(agent, rootfs):
    loop = "i=0; while [ $i -lt 100000 ]; do echo $i; i=$((i+1)); done"
    expected = "".join(f"{i}\n" for i in range(100000)).encode()
    for n in range(20):
        r = ctr(agent.address, "run", "--rm", "--rootfs", rootfs, f"c4-{n}", "/bin/sh", "-c",
                loop, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout == expected, f"round {n}: {len(r.stdout)} bytes"


def test_version_plugins_namespaces(agent, rootfs):
    v = ctr(agent.address, "version")
    assert v.returncode == 0, v.stderr
    assert re.search(rb"Server:\s+Version:\s+\S+", v.stdout)
    p = ctr(agent.address, "plugins", "ls")
    assert p.returncode == 0
    rows = [line.split() for line in p.stdout.decode().splitlines()[1:]]
    assert ["io.containerd.grpc.v1", "tasks", "-", "ok"] in rows
    assert any(r[:2] == ["io.containerd.runtime.v2", "native"] and r[-1] == "ok" for r in rows)
    r = ctr(agent.address, "run", "--rm", "--rootfs", rootfs, "nsprobe", "/bin/true",
            namespace="nsx")
    assert r.returncode == 0, r.stderr
    n = ctr(agent.address, "namespaces", "ls")
    assert n.returncode == 0
    assert "nsx" in [line.split()[0] for line in n.stdout.decode().splitlines()[1:]]


def test_same_id_in_two_namespaces(agent, rootfs):
    """B22 through ctr: same id in ns-a and ns-b are two tasks in different cgroups."""
    for ns in ("ns-a", "ns-b"):
        r = ctr(agent.address, "run", "-d", "--rootfs", rootfs, "web", "/bin/sleep", "3600",
                namespace=ns)
        assert r.returncode == 0, r.stderr
    pids = {}
    for ns in ("ns-a", "ns-b"):
        rows = ctr(agent.address, "t", "ls", namespace=ns).stdout.decode().splitlines()[1:]
        assert len(rows) == 1 and rows[0].split()[0] == "web"
        pids[ns] = int(rows[0].split()[1])
    assert pids["ns-a"] != pids["ns-b"]
    for ns, pid in pids.items():  # every v1 hierarchy we manage (or the v2 tree) holds it
        with open(f"/proc/{pid}/cgroup") as f:
            lines = [line.strip().split(":", 2) for line in f]
        managed = [path for _n, controllers, path in lines
                   if controllers and not controllers.startswith("name=")]
        if not managed:  # a pure v2 host
            managed = [path for _n, controllers, path in lines if not controllers]
        assert managed and set(managed) == {f"/{agent.cgroup_parent}/{ns}/web"}, lines
    assert ctr(agent.address, "t", "kill", "-s", "SIGKILL", "web", namespace="ns-a").returncode == 0
    row = ctr(agent.address, "t", "ls", namespace="ns-b").stdout.decode().splitlines()[1].split()
    assert row[2] == "RUNNING"
    assert ctr(agent.address, "t", "ls", "-q", namespace="ns-c").stdout == b""
    for ns in ("ns-a", "ns-b"):
        ctr(agent.address, "t", "kill", "-s", "SIGKILL", "web", namespace=ns)
        ctr(agent.address, "t", "delete", "-f", "web", namespace=ns)
        ctr(agent.address, "c", "rm", "web", namespace=ns)


@pytest.mark.parametrize("options", ["rbind:ro", "bind:ro", "ro:rbind", "rbind:ro:nosuid:nodev"])
def test_read_only_bind_mounts(agent, rootfs, tmp_path, options):
    """`ctr run --mount ...,options=rbind:ro`: the directory and the file are bound read-only
    (the remount reaches the new bind mount, not the mount that holds its destination)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "f").write_bytes(b"from the host\n")
    single = tmp_path / "single"
    single.write_bytes(b"one file\n")
    script = ("cat /mnt/b/f /mnt/one; touch /mnt/b/new; echo dir=$?; echo x >> /mnt/one; "
              "echo file=$?; awk '$2 == \"/mnt/b\" {print $4}' /proc/self/mounts | cut -d, -f1")
    r = ctr(agent.address, "run", "--rm",
            "--mount", f"type=bind,src={shared},dst=/mnt/b,options={options}",
            "--mount", f"type=bind,src={single},dst=/mnt/one,options={options}",
            "--rootfs", rootfs, "ro1", "/bin/sh", "-c", script)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode().splitlines()
    assert out == ["from the host", "one file", "dir=1", "file=1", "ro"], r.stdout + r.stderr
    assert sorted(os.listdir(shared)) == ["f"]
    assert single.read_bytes() == b"one file\n"
    assert leftovers(agent, "default", "ro1") == []


def _check_ro_bind_refused(agent, rootfs, source, destination: str, cid: str) -> None:
    """`ctr run` with a read-only bind of source on destination is refused because the
    destination, walked again, does not reach the new mount; nothing of cid is left."""
    r = ctr(agent.address, "run", "--rm",
            "--mount", f"type=bind,src={source},dst={destination},options=rbind:ro",
            "--rootfs", rootfs, cid, "/bin/true")
    assert r.returncode != 0
    assert b"does not lead to the new mount" in r.stderr, r.stderr
    assert ctr(agent.address, "c", "ls", "-q").stdout == b""
    assert leftovers(agent, "default", cid) == []


def test_a_bind_whose_destination_moves_under_it_is_refused(agent, rootfs, tmp_path):
    """A destination reached through a link in the image that passes through the new mount
    (twisted -> /turn/sub/.., with the source's own sub -> /) leads, walked again after the
    mount, to the container's root: the read-only remount is refused rather than made there."""
    source = tmp_path / "source"
    source.mkdir()
    os.symlink("/", source / "sub")
    turn = os.path.join(rootfs, "turn")
    twisted = os.path.join(rootfs, "twisted")
    os.makedirs(os.path.join(turn, "sub"))
    os.symlink("/turn/sub/..", twisted)
    try:
        _check_ro_bind_refused(agent, rootfs, source, "/twisted", "tw1")
        # The rootfs is as it was and still writable by the next container.
        r = ctr(agent.address, "run", "--rm", "--rootfs", rootfs, "tw2", "/bin/sh", "-c",
                "touch /tmp/w && rm /tmp/w && echo ok")
        assert (r.returncode, r.stdout) == (0, b"ok\n"), r.stderr
    finally:
        os.unlink(twisted)
        shutil.rmtree(turn)


def test_a_bind_whose_destination_leads_to_another_mount_is_refused(agent, rootfs, tmp_path):
    """twist/l -> d/.. in the image puts the bind on twist; walked again, l is the source's
    own link to /dev/shm, another mount's root: refused, /dev/shm untouched. Without that
    link the walk finds nothing, and nothing is made in the source either."""
    twist = os.path.join(rootfs, "twist")
    os.makedirs(os.path.join(twist, "d"))
    os.symlink("d/..", os.path.join(twist, "l"))
    luring = tmp_path / "luring"
    luring.mkdir()
    os.symlink("/dev/shm", luring / "l")
    plain = tmp_path / "plain"
    plain.mkdir()
    try:
        for source in (luring, plain):
            _check_ro_bind_refused(agent, rootfs, source, "/twist/l", "tw3")
        assert os.listdir(plain) == []
        r = ctr(agent.address, "run", "--rm", "--rootfs", rootfs, "tw4", "/bin/sh", "-c",
                "awk '$2 == \"/dev/shm\" {print $4}' /proc/self/mounts")
        assert r.returncode == 0 and r.stdout.startswith(b"rw,nosuid,nodev,noexec"), r.stdout
    finally:
        shutil.rmtree(twist)

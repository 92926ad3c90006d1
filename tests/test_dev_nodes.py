"""The container's /dev: the default nodes (null, zero, full, random, urandom, tty) and the
spec's own devices, each with its exact type, numbers, mode and owner, also a mode with the
set-group-id and group-execute bits (chown clears the first; it must be set again after),
and a device in a directory that does not exist yet."""

from __future__ import annotations

from agent.client import Client, default_spec
from agent.client.fifo import FifoSet
from grpc_helpers import needs_root
from helpers import remove, run

pytestmark = needs_root

NS = "dev"
NODES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
         "/dev/fuse", "/dev/sub/blk", "/dev/sgid"]


def test_device_nodes_have_their_exact_modes_and_owners(agent, rootfs):
    spec = default_spec(["/bin/sh", "-c", "stat -c '%n %F %a %u %g %t %T' " + " ".join(NODES)
                         + "; readlink /dev/ptmx; readlink /dev/fd"], rootfs, namespace=NS, id="d1")
    spec["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640,
         "uid": 1000, "gid": 1001},
        {"path": "/dev/sub/blk", "type": "b", "major": 7, "minor": 3, "fileMode": 0o600,
         "uid": 0, "gid": 6},
        {"path": "/dev/sgid", "type": "c", "major": 1, "minor": 3, "fileMode": 0o2670,
         "uid": 0, "gid": 5},
    ]

    async def body():
        async with Client(agent.address, NS) as c:
            fifos = FifoSet("d1", stdin=False)
            try:
                await c.create_container("d1", spec)
                fifos.open_readers()
                await c.create_task("d1", "", fifos.stdout, fifos.stderr)
                await c.start("d1")
                out = (await fifos.read(fifos.stdout)).decode()
                err = (await fifos.read(fifos.stderr)).decode()
                assert (await c.wait("d1")).exit_status == 0, err
            finally:
                fifos.close()
                await remove(c, "d1")
        assert out.splitlines() == [
            "/dev/null character special file 666 0 0 1 3",
            "/dev/zero character special file 666 0 0 1 5",
            "/dev/full character special file 666 0 0 1 7",
            "/dev/random character special file 666 0 0 1 8",
            "/dev/urandom character special file 666 0 0 1 9",
            "/dev/tty character special file 666 0 0 5 0",
            "/dev/fuse character special file 640 1000 1001 a e5",
            "/dev/sub/blk block special file 600 0 6 7 3",
            "/dev/sgid character special file 2670 0 5 1 3",
            "pts/ptmx",
            "/proc/self/fd",
        ]

    run(body())

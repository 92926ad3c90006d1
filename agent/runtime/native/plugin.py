"""Registers the native runtime (`io.containerd.runtime.v2.native`), the default runtime."""

from __future__ import annotations

from agent import plugin
from agent.cgroups import Cgroups, CgroupDriverError
from agent.native import SUPERVISOR_BINARY
from agent.runtime.native import recovery
from agent.runtime.native.runtime import NativeRuntime
from agent.runtime.native.supervisor import Supervisor

CONFIG = {
    # "auto" picks v2 when the cgroup2 tree carries the controllers, else v1.
    "cgroup_driver": "auto",
    # Tasks live at <parent>/<namespace>/<id> in every hierarchy.
    "cgroup_parent": "taskagent",
    # Where the cgroup2 tree is, when not at its usual place (hybrid hosts: .../unified).
    "cgroup_v2_mount": "",
    # The supervisor executable; empty means the one installed with the package.
    "supervisor_binary": "",
    # CRIU for checkpoint/restore (4.1 or newer on kernels from 6.13); empty: found in PATH.
    "criu_path": "",
    # cgroup v1: keep one empty cgroup frozen so the kernel's freezer stays switched on and
    # Pause/Resume skip the switch (~0.2 ms each). See agent/cgroups/anchor.py.
    "freezer_anchor": True,
}


async def _init(ic: plugin.InitContext) -> NativeRuntime:
    cfg = ic.config
    if not isinstance(cfg["freezer_anchor"], bool):
        raise RuntimeError(f"freezer_anchor must be true or false, not {cfg['freezer_anchor']!r}")
    try:
        cgroups = Cgroups(cfg["cgroup_driver"], cfg["cgroup_parent"], cfg["cgroup_v2_mount"])
    except CgroupDriverError as e:
        raise RuntimeError(str(e)) from None
    supervisor = Supervisor(ic.state, cfg["supervisor_binary"] or SUPERVISOR_BINARY,
                            claim=cgroups.claim)
    runtime = NativeRuntime(ic.state, cgroups, ic.get(plugin.EVENT), supervisor)
    try:
        await supervisor.connect()
    except CgroupDriverError as e:
        raise RuntimeError(str(e)) from None
    await recovery.recover(runtime)
    if cgroups.driver == "v1":
        runtime.use_freezer_anchor(cfg["freezer_anchor"])
    runtime.exports = ic.exports
    runtime.criu.start_check(cfg["criu_path"], ic.exports)
    ic.exports["cgroup_driver"] = cgroups.driver
    ic.exports["supervisor_pid"] = str(supervisor.pid)
    return runtime


plugin.register(plugin.Registration(
    type=plugin.RUNTIME,
    id="native",
    init=_init,
    requires=(plugin.EVENT,),
    config=CONFIG,
    close=lambda runtime: runtime.close(),
))

"""Registers the task monitor (`io.containerd.monitor.v1.cgroups`): OOM kills as events."""

from agent import plugin
from agent.monitor.oom import OomMonitor

plugin.register(plugin.Registration(
    type=plugin.TASK_MONITOR,
    id="cgroups",
    init=lambda ic: OomMonitor(ic.get(plugin.EVENT)),
    requires=(plugin.EVENT,),
    close=lambda m: m.close(),
))

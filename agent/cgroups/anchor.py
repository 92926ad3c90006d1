"""An empty cgroup kept frozen, so that pausing and resuming tasks on cgroup v1 stay cheap.

The kernel switches its freezer checks on when the first cgroup is frozen and off when the
last one is thawed. Each switch rewrites kernel code on every CPU (a static key): about
0.2 ms of every Pause and of every Resume on a host where nothing else is frozen. While one
empty cgroup of ours stays frozen the switch stays on, and freezing or thawing a task costs
only its own processes (about 0.02 ms). The cost of keeping it on is what the host pays
whenever any container is paused: one more check where tasks test for freezing. cgroup v2's
freezer has no such switch, so the anchor is for v1 only."""

from __future__ import annotations

import logging
import os

from agent.cgroups.base import write_text

log = logging.getLogger(__name__)

# Not a valid namespace name (those start with a letter or digit), so it can never be
# mistaken for the namespace level of a task's cgroup.
ANCHOR_NAME = "_freezer-anchor"


class FreezerAnchor:
    def __init__(self, freezer_mount: str, parent: str):
        self.path = os.path.join(freezer_mount, parent, ANCHOR_NAME)
        self.held = False

    def hold(self) -> bool:
        """Make the anchor and freeze it; a host that refuses only loses the speed-up."""
        try:
            os.makedirs(self.path, mode=0o755, exist_ok=True)
            write_text(os.path.join(self.path, "freezer.state"), "FROZEN")
        except OSError as e:
            log.warning("cgroup freezer anchor %s: %s (pause and resume stay correct, "
                        "only slower)", self.path, e)
            self.release()
            return False
        self.held = True
        return True

    def release(self) -> None:
        """Thaw and remove the anchor (it holds no process, so nothing waits on it)."""
        self.held = False
        try:
            write_text(os.path.join(self.path, "freezer.state"), "THAWED")
        except OSError:
            pass
        try:
            os.rmdir(self.path)
        except OSError:
            pass

"""Registers the event exchange (`io.containerd.event.v1.exchange`)."""

from agent import plugin
from agent.events.exchange import Exchange

plugin.register(plugin.Registration(
    type=plugin.EVENT,
    id="exchange",
    init=lambda ic: Exchange(int(ic.config["subscriber_queue"]),
                             float(ic.config["startup_backlog_seconds"])),
    config={
        # Events a subscriber may fall behind (beyond what gRPC buffers) before it is ended.
        "subscriber_queue": 8192,
        # How long events from start-up (exits that happened while the agent was down) are
        # replayed to new subscribers.
        "startup_backlog_seconds": 60.0,
    },
))

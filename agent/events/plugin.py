"""Registers the event exchange (`io.containerd.event.v1.exchange`)."""

from agent import plugin
from agent.events.exchange import Exchange

plugin.register(plugin.Registration(
    type=plugin.EVENT,
    id="exchange",
    init=lambda ic: Exchange(int(ic.config["subscriber_queue"])),
    # Events a subscriber may fall behind (beyond what gRPC buffers) before it is ended.
    config={"subscriber_queue": 8192},
))

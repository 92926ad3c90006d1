"""The plugins built into the agent. Importing a module registers its plugins; the order
here is registration order, which the loader refines by dependencies."""

import importlib

MODULES = (
    "agent.events.plugin",
    "agent.metadata.plugin",
    "agent.content.plugin",
    "agent.gc.plugin",
    "agent.runtime.native.plugin",
    "agent.monitor.plugin",
    "agent.services.containers.local",
    "agent.services.containers.service",
    "agent.services.namespaces.local",
    "agent.services.namespaces.service",
    "agent.services.leases.local",
    "agent.services.leases.service",
    "agent.services.content.local",
    "agent.services.content.service",
    "agent.services.images.local",
    "agent.services.images.service",
    "agent.services.events.service",
    "agent.services.tasks.local",
    "agent.services.tasks.service",
    "agent.services.introspection.local",
    "agent.services.introspection.service",
    "agent.services.version.service",
)

_loaded = False


def load() -> None:
    """Import every built-in plugin module once."""
    global _loaded
    if _loaded:
        return
    for name in MODULES:
        importlib.import_module(name)
    _loaded = True

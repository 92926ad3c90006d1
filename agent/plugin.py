"""Plugin registry and loader.

Every service, store and runtime registers a `Registration` (type, id, the plugin types it
requires, its default config section and an init function). The loader orders plugins so
that each one comes after the types it needs, initialises each once, skips disabled ones,
and keeps each plugin's instance or init error for `Introspection.Plugins`.

Ordering follows containerd: walk registrations in registration order and, depth first,
place every plugin of each required type before the plugin that requires it. A required
type that no enabled plugin provides, or a dependency cycle, stops start-up with one line.
"""

from __future__ import annotations

import inspect
import time
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from agent.errors import NotFound

log = logging.getLogger(__name__)

# Plugin types (containerd's names, so `ctr plugins ls` reads as users expect).
GRPC = "io.containerd.grpc.v1"
SERVICE = "io.containerd.service.v1"
RUNTIME = "io.containerd.runtime.v2"
METADATA = "io.containerd.metadata.v1"
CONTENT = "io.containerd.content.v1"
EVENT = "io.containerd.event.v1"
TASK_MONITOR = "io.containerd.monitor.v1"
GC = "io.containerd.gc.v1"
INTERNAL = "io.containerd.internal.v1"

InitFn = Callable[["InitContext"], Any | Awaitable[Any]]
CloseFn = Callable[[Any], Any | Awaitable[Any]]


class SkipPlugin(Exception):
    """Raised by an init function when the plugin does not apply here (shown as `skip`)."""

    def __init__(self, reason: str):
        super().__init__(f"skip plugin: {reason}")


class PluginLoadError(Exception):
    """Start-up cannot continue; the message is the one line shown to the operator."""


@dataclass
class Registration:
    type: str
    id: str
    init: InitFn
    requires: tuple[str, ...] = ()
    # Types that are used when present but may be absent (the tasks service's monitor).
    optional: tuple[str, ...] = ()
    config: dict[str, Any] | None = None
    close: CloseFn | None = None
    capabilities: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"{self.type}.{self.id}"


@dataclass
class Plugin:
    registration: Registration
    instance: Any = None
    error: BaseException | None = None
    exports: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


_REGISTRY: list[Registration] = []


def register(reg: Registration) -> Registration:
    for existing in _REGISTRY:
        if existing.uri == reg.uri:
            raise ValueError(f"plugin {reg.uri} is registered twice")
    _REGISTRY.append(reg)
    return reg


def registrations() -> list[Registration]:
    return list(_REGISTRY)


def order(regs: list[Registration], disabled: set[str]) -> list[Registration]:
    """Dependency order of the enabled registrations; raises PluginLoadError."""
    enabled = [r for r in regs if r.uri not in disabled and r.id not in disabled]
    by_type: dict[str, list[Registration]] = {}
    for r in enabled:
        by_type.setdefault(r.type, []).append(r)
    for r in enabled:
        for t in r.requires:
            if t not in by_type:
                raise PluginLoadError(
                    f"plugin {r.uri} requires a plugin of type {t}, and none is enabled"
                )
    ordered: list[Registration] = []
    placed: set[str] = set()
    visiting: list[str] = []

    def place(r: Registration) -> None:
        if r.uri in placed:
            return
        if r.uri in visiting:
            cycle = visiting[visiting.index(r.uri):] + [r.uri]
            raise PluginLoadError("plugin dependency cycle: " + " -> ".join(cycle))
        visiting.append(r.uri)
        for t in r.requires + r.optional:
            for dep in by_type.get(t, []):
                if dep is not r:
                    place(dep)
        visiting.pop()
        placed.add(r.uri)
        ordered.append(r)

    for r in enabled:
        place(r)
    return ordered


class InitContext:
    """What an init function sees: its directories, its config and the plugins before it."""

    def __init__(self, reg: Registration, plugins: "PluginSet", root: str, state: str,
                 config: dict[str, Any], server_config: Any):
        self.registration = reg
        self.plugins = plugins
        self.root = os.path.join(root, reg.uri)
        self.state = os.path.join(state, reg.uri)
        self.config = config
        self.server_config = server_config
        self.exports: dict[str, str] = {}

    def get(self, plugin_type: str) -> Any:
        """The instance of the first plugin of a type; NotFound when none loaded."""
        return self.plugins.get(plugin_type)

    def get_by_type(self, plugin_type: str) -> dict[str, Plugin]:
        found = self.plugins.by_type(plugin_type)
        if not found:
            raise NotFound(f"no plugins registered for {plugin_type}")
        return found

    def get_by_id(self, plugin_type: str, plugin_id: str) -> Any:
        p = self.plugins.by_type(plugin_type).get(plugin_id)
        if p is None:
            raise NotFound(f"plugin {plugin_type}.{plugin_id} not found")
        if p.error is not None:
            raise p.error
        return p.instance


class PluginSet:
    """Every plugin that took part in start-up, in init order, with instance or error."""

    def __init__(self) -> None:
        self.ordered: list[Plugin] = []

    def add(self, p: Plugin) -> None:
        self.ordered.append(p)

    def by_type(self, plugin_type: str) -> dict[str, Plugin]:
        return {p.registration.id: p for p in self.ordered if p.registration.type == plugin_type}

    def get(self, plugin_type: str) -> Any:
        for p in self.ordered:
            if p.registration.type == plugin_type:
                if p.error is not None:
                    raise p.error
                return p.instance
        raise NotFound(f"no plugins registered for {plugin_type}")


async def load(regs: list[Registration], *, root: str, state: str, disabled: set[str],
               required: set[str], plugin_config: dict[str, dict[str, Any]],
               server_config: Any) -> PluginSet:
    """Initialise every enabled plugin in dependency order."""
    plugins = PluginSet()
    for reg in order(regs, disabled):
        config = dict(reg.config or {})
        config.update(plugin_config.get(reg.uri, {}))
        ic = InitContext(reg, plugins, root, state, config, server_config)
        p = Plugin(reg)
        started = time.perf_counter()
        try:
            result = reg.init(ic)
            if inspect.isawaitable(result):
                result = await result
            p.instance = result
            log.debug("plugin %s loaded in %.1f ms", reg.uri, (time.perf_counter() - started) * 1e3)
        except SkipPlugin as e:
            p.error = e
            log.info("plugin %s skipped: %s", reg.uri, e)
        except Exception as e:  # kept for introspection; start-up goes on unless required
            p.error = e
            log.warning("plugin %s failed to load: %s", reg.uri, e)
        p.exports = ic.exports
        plugins.add(p)
        if p.error is not None and reg.uri in required:
            await close_all(plugins)  # those already up let go of what they hold
            raise PluginLoadError(f"required plugin {reg.uri} failed to load: {p.error}")
    missing = required - {p.registration.uri for p in plugins.ordered}
    if missing:
        await close_all(plugins)
        raise PluginLoadError(f"required plugins are not enabled: {', '.join(sorted(missing))}")
    return plugins


async def close_all(plugins: PluginSet) -> None:
    """Close plugins in reverse init order; errors are logged, not raised."""
    for p in reversed(plugins.ordered):
        close = p.registration.close
        if close is None or p.error is not None or p.instance is None:
            continue
        try:
            result = close(p.instance)
            if inspect.isawaitable(result):
                await result
        except Exception as e:
            log.warning("closing plugin %s: %s", p.registration.uri, e)

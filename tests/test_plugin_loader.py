"""The plugin registry and loader: order, disabled plugins, init errors, refusals."""

from __future__ import annotations

import asyncio

import pytest

from agent import plugin
from agent.errors import NotFound
from agent.plugin import PluginLoadError, Registration, SkipPlugin


def _load(regs, disabled=(), required=()):
    return asyncio.run(plugin.load(regs, root="/nonexistent/root", state="/nonexistent/state",
                                   disabled=set(disabled), required=set(required),
                                   plugin_config={}, server_config=None))


def test_dependency_order_and_instances():
    seen = []

    def init(name):
        def fn(ic):
            seen.append(name)
            return f"{name}-instance"
        return fn

    regs = [
        Registration("t.grpc", "api", init("api"), requires=("t.service",)),
        Registration("t.service", "svc", init("svc"), requires=("t.store",)),
        Registration("t.store", "db", init("db")),
    ]
    plugins = _load(regs)
    assert seen == ["db", "svc", "api"]
    assert [p.registration.uri for p in plugins.ordered] == ["t.store.db", "t.service.svc",
                                                            "t.grpc.api"]
    assert plugins.get("t.service") == "svc-instance"


def test_init_context_lookups_and_config():
    got = {}

    async def second(ic):
        got["first"] = ic.get("t.a")
        got["by_id"] = ic.get_by_id("t.a", "one")
        got["cfg"] = ic.config
        with pytest.raises(NotFound):
            ic.get("t.missing")
        return "two"

    regs = [Registration("t.a", "one", lambda ic: "one"),
            Registration("t.b", "two", second, requires=("t.a",), config={"x": 1, "y": "d"})]
    asyncio.run(plugin.load(regs, root="/r", state="/s", disabled=set(), required=set(),
                            plugin_config={"t.b.two": {"y": "set"}}, server_config=None))
    assert got == {"first": "one", "by_id": "one", "cfg": {"x": 1, "y": "set"}}


def test_missing_required_type_is_one_line():
    regs = [Registration("t.service", "tasks", lambda ic: 1, requires=("t.event",))]
    with pytest.raises(PluginLoadError) as e:
        _load(regs)
    assert str(e.value) == ("plugin t.service.tasks requires a plugin of type t.event, "
                            "and none is enabled")


def test_optional_type_may_be_absent():
    regs = [Registration("t.service", "tasks", lambda ic: 1, optional=("t.monitor",))]
    assert _load(regs).get("t.service") == 1


def test_cycle_is_one_line():
    regs = [Registration("t.a", "a", lambda ic: 1, requires=("t.b",)),
            Registration("t.b", "b", lambda ic: 2, requires=("t.a",))]
    with pytest.raises(PluginLoadError) as e:
        _load(regs)
    assert str(e.value) == "plugin dependency cycle: t.a.a -> t.b.b -> t.a.a"


def test_disabled_plugins_take_no_part():
    regs = [Registration("t.a", "a", lambda ic: 1), Registration("t.b", "b", lambda ic: 2)]
    plugins = _load(regs, disabled=["t.b.b"])
    assert [p.registration.uri for p in plugins.ordered] == ["t.a.a"]


def test_init_errors_are_kept_and_required_ones_stop_startup():
    def boom(ic):
        raise RuntimeError("no disk")

    def skip(ic):
        raise SkipPlugin("criu not found")

    regs = [Registration("t.a", "bad", boom), Registration("t.a", "skipped", skip),
            Registration("t.a", "good", lambda ic: 3)]
    plugins = _load(regs)
    errors = {p.registration.id: str(p.error) if p.error else None for p in plugins.ordered}
    assert errors == {"bad": "no disk", "skipped": "skip plugin: criu not found", "good": None}
    with pytest.raises(PluginLoadError) as e:
        _load(regs, required=["t.a.bad"])
    assert str(e.value) == "required plugin t.a.bad failed to load: no disk"


def test_duplicate_registration_refused():
    reg = Registration("t.dup", "x", lambda ic: 1)
    plugin.register(reg)
    try:
        with pytest.raises(ValueError):
            plugin.register(Registration("t.dup", "x", lambda ic: 2))
    finally:
        plugin._REGISTRY.remove(reg)


def test_tasks_service_registered_as_in_the_seed():
    from agent import builtins

    builtins.load()
    regs = {r.uri: r for r in plugin.registrations()}
    tasks = regs["io.containerd.grpc.v1.tasks"]
    service = regs["io.containerd.service.v1.tasks-service"]
    assert tasks.requires == (plugin.SERVICE,)
    assert set(service.requires) == {plugin.EVENT, plugin.RUNTIME, plugin.METADATA}
    assert service.optional == (plugin.TASK_MONITOR, plugin.CONTENT)

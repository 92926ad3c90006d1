"""Small helpers for tests that drive a real agent through its socket with the generated stubs."""

from __future__ import annotations

import glob
import os
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import pytest
from conftest import AgentProcess
from google.protobuf.any_pb2 import Any

from agent.api.containerd.services.containers.v1 import containers_pb2
from agent.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc

# The tasks service may not be built yet; these tests do not need it.
NO_REQUIRED_PLUGINS = "version = 1\nrequired_plugins = []\n"

SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
RUNC_OPTIONS_TYPE = "containerd.runc.v1.Options"
ZERO_TIME_SECONDS = -62135596800  # Go's zero time, as ctr sends created_at/updated_at
READY_TOPIC = "/test/ready"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the agent runs only as root")


@contextmanager
def running_agent(config: str = NO_REQUIRED_PLUGINS, base: str | None = None
                  ) -> Iterator[AgentProcess]:
    """An agent for a whole test module (tests keep apart by namespace)."""
    own = base is None
    base = base or tempfile.mkdtemp(prefix="taskagent-test-")
    agent = AgentProcess(base, config)
    try:
        agent.start()
        yield agent
    finally:
        agent.stop()
        stop_supervisors(agent.state)
        if own:
            shutil.rmtree(base, ignore_errors=True)


def restartable_agents(agent_factory: Callable[..., AgentProcess]
                       ) -> Iterator[Callable[..., AgentProcess]]:
    """For a fixture: conftest's agent_factory without required plugins (the same base dir
    gives a restart), plus supervisor clean-up."""
    made: list[AgentProcess] = []

    def make(config: str = NO_REQUIRED_PLUGINS, base: str | None = None) -> AgentProcess:
        a = agent_factory(config, base)
        made.append(a)
        return a

    yield make
    for a in made:  # every agent first: a live one would re-attach to its supervisor
        a.stop()
    for state in dict.fromkeys(a.state for a in made):
        stop_supervisors(state)


def stop_supervisors(state: str) -> None:
    """Stop the supervisor an agent started. conftest looks for it at <state>/supervisor.sock;
    the runtime plugin keeps it in its own state directory, so look there too."""
    try:
        from agent.runtime.native import supervisor
    except ImportError:
        return
    for path in glob.glob(os.path.join(glob.escape(state), "*", "supervisor.sock")):
        supervisor.shutdown_sync(path, force=True)


def channel(agent: AgentProcess) -> grpc.Channel:
    return grpc.insecure_channel(f"unix://{agent.address}")


def ns_md(namespace: str) -> tuple[tuple[str, str], ...]:
    return (("containerd-namespace", namespace),)


def namespace_for(name: str) -> str:
    """A valid namespace name derived from a test's name."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    return cleaned[-60:].strip("-") or "test"


def spec_any(spec: bytes = b'{"ociVersion":"1.0.2-dev","process":{"args":["/bin/true"]}}'
             ) -> Any:
    return Any(type_url=SPEC_TYPE, value=spec)


def ctr_container(container_id: str, **fields: object) -> containers_pb2.Container:
    """A container shaped like the one `ctr run --rootfs` sends, with `fields` on top."""
    c = containers_pb2.Container(id=container_id, spec=spec_any())
    c.runtime.name = "io.containerd.runc.v2"
    c.runtime.options.type_url = RUNC_OPTIONS_TYPE
    c.created_at.seconds = ZERO_TIME_SECONDS
    c.updated_at.seconds = ZERO_TIME_SECONDS
    for key, value in fields.items():
        if key == "labels":
            c.labels.update(value)  # type: ignore[arg-type]
        elif key == "spec":
            c.spec.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(c, key, value)
    return c


def rpc_error(call: Callable[..., object], *args: object, **kwargs: object) -> grpc.RpcError:
    """Make the call, which must fail; return its error for code and message checks."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def assert_error(err: grpc.RpcError, code: grpc.StatusCode, message: str | None = None) -> None:
    assert err.code() == code, (err.code(), err.details())
    if message is not None:
        assert err.details() == message


class EventReader:
    """A live Events/Subscribe stream read on a thread; `ready()` makes sure the agent has
    registered it before the test acts."""

    def __init__(self, agent: AgentProcess, filters: list[str] | None = None):
        self.channel = channel(agent)
        self.events: queue.Queue = queue.Queue()
        self.call = events_pb2_grpc.EventsStub(self.channel).Subscribe(
            events_pb2.SubscribeRequest(filters=filters or []))
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for env in self.call:
                self.events.put(env)
        except grpc.RpcError as e:
            self.error = e
        self.events.put(None)

    def ready(self, agent: AgentProcess, namespace: str = "eventsready") -> None:
        """Publish markers until one arrives (the stream must let READY_TOPIC through),
        then drop everything read so far."""
        stub = events_pb2_grpc.EventsStub(self.channel)
        for _ in range(50):
            stub.Publish(events_pb2.PublishRequest(
                topic=READY_TOPIC, event=Any(type_url="test.Ready")), metadata=ns_md(namespace))
            try:
                env = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            assert env is not None, self.error
            if env.topic == READY_TOPIC:
                self.drain()
                return
        raise AssertionError("the subscription never received its marker")

    def drain(self) -> None:
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                return

    def next(self, timeout: float = 5.0) -> events_pb2.Envelope:
        env = self.events.get(timeout=timeout)
        assert env is not None, f"stream ended: {self.error}"
        return env

    def take(self, count: int, topic_prefix: str = "", timeout: float = 5.0
             ) -> list[events_pb2.Envelope]:
        """The next `count` envelopes whose topic starts with `topic_prefix` (markers that
        other readers' `ready()` published are skipped)."""
        out = []
        while len(out) < count:
            env = self.next(timeout)
            if env.topic != READY_TOPIC and env.topic.startswith(topic_prefix):
                out.append(env)
        return out

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(5)
        self.channel.close()

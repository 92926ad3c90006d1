"""The event exchange: publish, forward, subscribe with filters.

Publishing is synchronous and in call order, so the events of one task reach every
subscriber in the order its state changed. Each subscriber has a bounded queue: a slow
subscriber never stalls publishing or the others; one that falls too far behind is ended
with RESOURCE_EXHAUSTED and can subscribe again."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator

from google.protobuf.message import Message

from agent import filters
from agent.api.containerd.services.events.v1 import events_pb2
from agent.errors import ResourceExhausted

log = logging.getLogger(__name__)

QUEUE_LIMIT = 8192


def envelope(namespace: str, topic: str, event: Message, at_ns: int | None = None
             ) -> events_pb2.Envelope:
    env = events_pb2.Envelope(namespace=namespace, topic=topic)
    at_ns = time.time_ns() if at_ns is None else at_ns
    env.timestamp.FromNanoseconds(at_ns)
    # containerd's clients resolve bare type names; no type.googleapis.com/ prefix.
    env.event.type_url = event.DESCRIPTOR.full_name
    env.event.value = event.SerializeToString()
    return env


def _adaptor(env: events_pb2.Envelope, event: Message | None):
    def field(path: tuple[str, ...]) -> tuple[str, bool]:
        head = path[0]
        if head == "topic":
            return env.topic, bool(env.topic)
        if head == "namespace":
            return env.namespace, bool(env.namespace)
        if head == "event" and len(path) == 2 and event is not None:
            fd = event.DESCRIPTOR.fields_by_name.get(path[1])
            if fd is None or fd.message_type is not None:
                return "", False
            value = getattr(event, path[1])
            if fd.is_repeated:
                return "", False
            return str(value).lower() if isinstance(value, bool) else str(value), True
        return "", False

    return field


class Subscription:
    def __init__(self, exchange: "Exchange", flt: filters.Filter, limit: int):
        self.exchange = exchange
        self.filter = flt
        self.limit = limit
        self.queue: asyncio.Queue = asyncio.Queue()
        self.overflowed = False

    def offer(self, env: events_pb2.Envelope, event: Message | None) -> None:
        if self.overflowed:
            return
        if self.filter.alternatives and not self.filter.match(_adaptor(env, event)):
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(None)  # wakes the reader so it can end the stream
            return
        self.queue.put_nowait(env)

    async def __aiter__(self) -> AsyncIterator[events_pb2.Envelope]:
        try:
            while True:
                env = await self.queue.get()
                if env is None:
                    raise ResourceExhausted(
                        f"subscriber fell {self.limit} events behind; subscribe again"
                    )
                yield env
        finally:
            self.exchange.unsubscribe(self)


class Exchange:
    """Events published while the agent starts (the exits of tasks that ended while it was
    down) cannot reach anyone yet: they are kept and replayed to every subscriber that
    comes within `backlog_seconds` of the agent serving, so a client that reconnects after
    a restart sees each of them once."""

    def __init__(self, queue_limit: int = QUEUE_LIMIT, backlog_seconds: float = 60.0) -> None:
        self.queue_limit = queue_limit
        self.backlog_seconds = backlog_seconds
        self.subscribers: list[Subscription] = []
        self.published = 0
        self._starting = True
        self._backlog: list[tuple[events_pb2.Envelope, Message | None]] = []

    def serving(self) -> None:
        """The agent now serves: what is published from here on goes out live only; the
        start-up backlog is replayed to new subscribers for a while longer."""
        self._starting = False
        if self._backlog:
            asyncio.get_running_loop().call_later(self.backlog_seconds, self._backlog.clear)

    def publish(self, namespace: str, topic: str, event: Message) -> None:
        self.published += 1
        if not self.subscribers and not self._starting:
            return
        env = envelope(namespace, topic, event)
        if self._starting:
            self._backlog.append((env, event))
        for sub in list(self.subscribers):
            sub.offer(env, event)

    def forward(self, env: events_pb2.Envelope, event: Message | None = None) -> None:
        self.published += 1
        for sub in list(self.subscribers):
            sub.offer(env, event)

    def subscribe(self, filter_strings: list[str]) -> Subscription:
        sub = Subscription(self, filters.parse_all(filter_strings), self.queue_limit)
        for env, event in self._backlog:
            sub.offer(env, event)
        self.subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        try:
            self.subscribers.remove(sub)
        except ValueError:
            pass

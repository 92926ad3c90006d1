"""The events service (`io.containerd.grpc.v1.events`): Publish, Forward and Subscribe over
the event exchange.

Published and forwarded events keep their Any exactly as sent. When its type is one we know
(the containerd.events messages and anything else in the protobuf pool) the event is also
decoded, so that subscribers' filters on `event.<field>` work. Subscribe streams from every
namespace and never ends on its own; the client ends it by cancelling."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.any_pb2 import Any
from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import DecodeError, Message

from agent import identifiers, plugin

# Imported so their messages are in the pool for decoding.
from agent.api.containerd.events import (  # noqa: F401
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    task_pb2,
)
from agent.api.containerd.services.events.v1 import events_pb2 as api
from agent.api.containerd.services.events.v1 import events_pb2_grpc as api_grpc
from agent.errors import InvalidArgument
from agent.events.exchange import Exchange
from agent.server import context

# Go's zero time, which containerd's clients send for "unset".
_ZERO_TIME_SECONDS = -62135596800
_TYPE_CACHE_LIMIT = 1024


class EventsService(api_grpc.EventsServicer):
    def __init__(self, exchange: Exchange):
        self.exchange = exchange
        self._types: dict[str, type[Message] | None] = {}

    def register(self, server: grpc.aio.Server) -> None:
        api_grpc.add_EventsServicer_to_server(self, server)

    async def Publish(self, request: api.PublishRequest, ctx: grpc.aio.ServicerContext
                      ) -> Empty:
        namespace = context.namespace()
        validate_topic(request.topic)
        if not request.HasField("event"):
            raise InvalidArgument(f"event for topic {request.topic} must be set")
        env = api.Envelope(namespace=namespace, topic=request.topic, event=request.event)
        env.timestamp.FromNanoseconds(time.time_ns())
        self.exchange.forward(env, self.decode(request.event))
        return Empty()

    async def Forward(self, request: api.ForwardRequest, ctx: grpc.aio.ServicerContext
                      ) -> Empty:
        env = request.envelope
        if not identifiers.is_valid(env.namespace):
            try:
                identifiers.validate(env.namespace, "namespace")
            except InvalidArgument as e:
                raise InvalidArgument(f"event envelope has invalid namespace: {e}") from None
        validate_topic(env.topic)
        if not env.HasField("timestamp") or (
            env.timestamp.seconds == _ZERO_TIME_SECONDS and env.timestamp.nanos == 0
        ):
            raise InvalidArgument("timestamp must be set on forwarded event")
        self.exchange.forward(env, self.decode(env.event))
        return Empty()

    async def Subscribe(self, request: api.SubscribeRequest, ctx: grpc.aio.ServicerContext
                        ) -> AsyncIterator[api.Envelope]:
        async for env in self.exchange.subscribe(list(request.filters)):
            yield env

    def decode(self, event: Any) -> Message | None:
        """The event as a message when its type is known, else None (it still travels)."""
        url = event.type_url
        try:
            cls = self._types[url]
        except KeyError:
            cls = _message_class(url)
            if len(self._types) < _TYPE_CACHE_LIMIT:  # clients choose the URLs: stay bounded
                self._types[url] = cls
        if cls is None:
            return None
        try:
            return cls.FromString(event.value)
        except DecodeError:
            return None


def _message_class(type_url: str) -> type[Message] | None:
    name = type_url.rsplit("/", 1)[-1]
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    return message_factory.GetMessageClass(desc)


def validate_topic(topic: str) -> None:
    """containerd's rule: "/" then one or more "/"-separated identifiers."""
    def fail(reason: str) -> InvalidArgument:
        return InvalidArgument(f"envelope topic {topic!r}: {reason}")

    if not topic:
        raise fail("must not be empty")
    if topic[0] != "/":
        raise fail("must start with '/'")
    if len(topic) == 1:
        raise fail("must have at least one component")
    for component in topic[1:].split("/"):
        if not identifiers.is_valid(component):
            try:
                identifiers.validate(component, "topic component")
            except InvalidArgument as e:
                raise fail(str(e)) from None


plugin.register(plugin.Registration(
    type=plugin.GRPC,
    id="events",
    requires=(plugin.EVENT,),
    init=lambda ic: EventsService(ic.get_by_id(plugin.EVENT, "exchange")),
))

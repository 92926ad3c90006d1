"""A slow subscriber never stalls publishing or the other subscribers; one that falls too
far behind is ended with RESOURCE_EXHAUSTED. The agent here keeps 50 events per subscriber
(the default is 8192) and the events are large, so gRPC's own buffers fill quickly too."""

from __future__ import annotations

import asyncio

import grpc

from agent.api.containerd.events import task_pb2 as ev
from agent.api.containerd.services.events.v1 import events_pb2
from agent.client import Client
from helpers import run

TOTAL = 1000
BIG = "b" * 16000


def test_slow_subscriber_is_ended_and_others_get_everything(agent_factory):
    agent = agent_factory('[plugins."io.containerd.event.v1.exchange"]\n'
                          "  subscriber_queue = 50\n").start()

    async def scenario():
        async with Client(agent.address, "bp") as fast, Client(agent.address, "bp") as slow:
            fast_stream = fast.subscribe(["topic==/tasks/create"])
            slow_stream = slow.subscribe(["topic==/tasks/create"])
            await asyncio.sleep(0.3)  # both subscriptions are in place
            ids: list[str] = []

            async def read_fast():
                async for env in fast_stream:
                    ids.append(ev.TaskCreate.FromString(env.event.value).container_id)
                    if len(ids) == TOTAL:
                        return

            reader = asyncio.ensure_future(read_fast())
            req = events_pb2.PublishRequest(topic="/tasks/create")
            req.event.type_url = "containerd.events.TaskCreate"
            for i in range(TOTAL):
                req.event.value = ev.TaskCreate(container_id=f"c{i}", bundle=BIG).SerializeToString()
                await fast.events.Publish(req, metadata=fast.md())
            await asyncio.wait_for(reader, 60)
            assert ids == [f"c{i}" for i in range(TOTAL)]  # all of them, in order
            count = 0
            with_code = None
            try:
                while True:
                    await asyncio.wait_for(slow_stream.read(), 10)
                    count += 1
            except grpc.aio.AioRpcError as e:
                with_code = (e.code(), e.details())
            assert with_code == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                 "subscriber fell 50 events behind; subscribe again")
            assert 0 < count < TOTAL
            assert await fast.server_version()

    run(scenario())

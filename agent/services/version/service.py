"""The version service (`io.containerd.grpc.v1.version`): the agent's version and revision.

The revision is `agent.__revision__` when a build recorded one, else the commit of the git
checkout the package runs from, else "unknown". ctr only warns when either differs from its
own, so any value is safe."""

from __future__ import annotations

import os

import grpc
from google.protobuf.empty_pb2 import Empty

import agent
from agent import plugin
from agent.api.containerd.services.version.v1 import version_pb2 as api
from agent.api.containerd.services.version.v1 import version_pb2_grpc as api_grpc


class VersionService(api_grpc.VersionServicer):
    def __init__(self, version: str, revision: str):
        self.response = api.VersionResponse(version=version, revision=revision)

    def register(self, server: grpc.aio.Server) -> None:
        api_grpc.add_VersionServicer_to_server(self, server)

    async def Version(self, request: Empty, ctx: grpc.aio.ServicerContext
                      ) -> api.VersionResponse:
        return self.response


def revision() -> str:
    recorded = getattr(agent, "__revision__", "")
    if recorded:
        return recorded
    git = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(agent.__file__))), ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            with open(os.path.join(git, head[5:])) as f:
                head = f.read().strip()
    except OSError:
        return "unknown"
    return head[:40] if len(head) >= 40 else "unknown"


plugin.register(plugin.Registration(
    type=plugin.GRPC,
    id="version",
    init=lambda ic: VersionService(agent.__version__, revision()),
))

"""An asyncio client for the agent (and for containerd: the API is the same)."""

from agent.client.client import Client
from agent.client.spec import default_spec

__all__ = ["Client", "default_spec"]

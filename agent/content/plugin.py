"""Registers the content store (`io.containerd.content.v1.content`).

Its instance is the `ContentStore`; blobs and ingests live under the plugin's root
(`<root>/io.containerd.content.v1.content/`), the per-namespace view in the metadata
database."""

from __future__ import annotations

import os

from agent import plugin
from agent.content.store import ContentStore


def _init(ic: plugin.InitContext) -> ContentStore:
    os.makedirs(ic.root, mode=0o711, exist_ok=True)
    ic.exports["root"] = ic.root
    return ContentStore(ic.root, ic.get(plugin.METADATA))


plugin.register(plugin.Registration(
    type=plugin.CONTENT,
    id="content",
    requires=(plugin.METADATA,),
    init=_init,
))

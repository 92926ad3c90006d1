"""Registers the metadata database (`io.containerd.metadata.v1.sqlite`).

Its instance is the `MetadataDB`, with `.namespaces`, `.containers` and `.leases` stores."""

from __future__ import annotations

import os

from agent import plugin
from agent.metadata.db import MetadataDB


def _init(ic: plugin.InitContext) -> MetadataDB:
    os.makedirs(ic.root, mode=0o700, exist_ok=True)
    return MetadataDB(os.path.join(ic.root, "meta.db"),
                      synchronous=str(ic.config.get("synchronous", "normal")).lower())


plugin.register(plugin.Registration(
    type=plugin.METADATA,
    id="sqlite",
    init=_init,
    # "normal": a power cut may lose the last commits; "full": one fsync per write.
    config={"synchronous": "normal"},
    close=lambda db: db.close(),
))

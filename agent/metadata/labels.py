"""Label rules shared by every metadata record (containerd's `labels.Validate`)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from agent.errors import InvalidArgument

# Key and value together, in bytes, as containerd counts them.
MAX_SIZE = 4096


def validate(labels: Mapping[str, str], what: str) -> None:
    """Raise InvalidArgument naming `what` (e.g. "containers.Labels") for an oversized label."""
    for key, value in labels.items():
        validate_one(key, value, what)


def validate_one(key: str, value: str, what: str) -> None:
    if len(key.encode()) + len(value.encode()) > MAX_SIZE:
        raise InvalidArgument(
            f"{what}: label key and value greater than maximum size ({MAX_SIZE} bytes), "
            f"key: {key[:10]}: invalid argument"
        )


def without_empty(labels: Mapping[str, str]) -> dict[str, str]:
    """containerd never stores a label with an empty value: setting one to "" removes it."""
    return {k: v for k, v in labels.items() if v}


def encode(labels: Mapping[str, str]) -> bytes | None:
    return orjson.dumps(dict(labels)) if labels else None


def decode(raw: bytes | None) -> dict[str, str]:
    return orjson.loads(raw) if raw else {}

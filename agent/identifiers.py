"""Validation of names that clients send: namespaces, container ids and exec ids.

They become path components and cgroup names, so the rule is containerd's: 1 to 76
characters, runs of [A-Za-z0-9] joined by single '.', '_' or '-'. Nothing else passes,
which keeps `..`, `/` and empty names out of every path we build."""

import re

from agent.errors import InvalidArgument

MAX_LENGTH = 76
_VALID = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*\Z")


def is_valid(name: str) -> bool:
    return 0 < len(name) <= MAX_LENGTH and _VALID.match(name) is not None


def validate(name: str, what: str = "identifier") -> str:
    """Return `name` unchanged, or raise InvalidArgument naming the problem."""
    if not name:
        raise InvalidArgument(f"{what} must not be empty")
    if len(name) > MAX_LENGTH:
        raise InvalidArgument(
            f"{what} {name[:20]!r}... is {len(name)} characters; at most {MAX_LENGTH} are allowed"
        )
    if _VALID.match(name) is None:
        raise InvalidArgument(
            f"{what} {name!r} is invalid: use letters and digits, separated by single '.', '_' or '-'"
        )
    return name

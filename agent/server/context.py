"""Per-request values that the interceptor sets and the services read."""

import contextvars

from agent.errors import FailedPrecondition

NAMESPACE_KEY = "containerd-namespace"
LEASE_KEY = "containerd-lease"

_namespace: contextvars.ContextVar[str | None] = contextvars.ContextVar("namespace", default=None)
_lease: contextvars.ContextVar[str | None] = contextvars.ContextVar("lease", default=None)


def namespace() -> str:
    """The validated namespace of the current request."""
    ns = _namespace.get()
    if not ns:
        raise FailedPrecondition("namespace is required")
    return ns


def namespace_or_none() -> str | None:
    return _namespace.get()


def lease() -> str | None:
    return _lease.get()


def set_request(ns: str | None, lease_id: str | None) -> None:
    _namespace.set(ns)
    _lease.set(lease_id)

"""Supervisor failures (errno + "step: detail") as agent errors."""

from __future__ import annotations

import errno

from agent import errors
from agent.runtime.native.supervisor import SupervisorError, SupervisorLost

_PRECONDITION = {errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ENOEXEC, errno.ELOOP,
                 errno.EISDIR, errno.EBUSY, errno.ECHILD, errno.EPERM, errno.ETXTBSY}


def to_agent_error(e: Exception, doing: str) -> errors.AgentError:
    if isinstance(e, SupervisorLost):
        return errors.Unavailable(f"{doing}: the supervisor is not reachable ({e})")
    if not isinstance(e, SupervisorError):
        return errors.Unknown(f"{doing}: {e}")
    msg = f"{doing}: {e.message}"
    if e.errno == errno.ESRCH:
        return errors.NotFound("process already finished")
    if e.errno == errno.EEXIST:
        return errors.AlreadyExists(msg)
    if e.errno == errno.EINVAL:
        return errors.InvalidArgument(msg)
    if e.errno in _PRECONDITION:
        return errors.FailedPrecondition(msg)
    return errors.Unknown(msg)

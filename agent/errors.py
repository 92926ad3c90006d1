"""The agent's error types. Everything below the gRPC face raises these; one module
(`agent.server.status`) turns them into gRPC status codes, nothing else builds statuses."""


class AgentError(Exception):
    """Base class: a failure a client can act on. The message is shown to the client."""


class NotFound(AgentError):
    pass


class AlreadyExists(AgentError):
    pass


class FailedPrecondition(AgentError):
    pass


class InvalidArgument(AgentError):
    pass


class Unavailable(AgentError):
    pass


class NotImplementedYet(AgentError):
    """The request is understood but this agent does not implement it."""


class Aborted(AgentError):
    pass


class Internal(AgentError):
    pass


class Unknown(AgentError):
    """A failure of the runtime or the kernel passed through as text (containerd's UNKNOWN)."""


class ResourceExhausted(AgentError):
    """A bounded resource ran out (a subscriber that fell too far behind)."""

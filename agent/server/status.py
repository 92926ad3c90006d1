"""The one place where agent errors become gRPC status codes."""

import grpc

from agent import errors

_CODES: dict[type, grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.NotImplementedYet: grpc.StatusCode.UNIMPLEMENTED,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
    errors.Unknown: grpc.StatusCode.UNKNOWN,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def code_of(exc: BaseException) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = _CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.UNKNOWN


def error_from_code(code: grpc.StatusCode, message: str) -> errors.AgentError:
    """The reverse mapping, used by our client to raise typed errors."""
    for cls, c in _CODES.items():
        if c == code:
            return cls(message)
    return errors.Unknown(message)

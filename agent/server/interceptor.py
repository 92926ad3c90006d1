"""The request interceptor: every RPC passes through it once.

It reads the `containerd-namespace` metadata (required except for the services that are not
namespaced), turns agent errors into gRPC statuses through `agent.server.status`, logs
unexpected failures, and records each method's handling time."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import grpc

from agent import identifiers
from agent.errors import AgentError
from agent.server import context as reqctx
from agent.server.rpcstats import STATS
from agent.server.status import code_of

log = logging.getLogger(__name__)

# Services that work without a namespace (containerd answers these for any caller).
UNNAMESPACED = (
    "/containerd.services.version.v1.Version/",
    "/containerd.services.introspection.v1.Introspection/",
    "/containerd.services.namespaces.v1.Namespaces/",
    "/containerd.services.events.v1.Events/Subscribe",
    "/containerd.services.events.v1.Events/Forward",
    "/grpc.",
)


def _read_metadata(ctx: grpc.aio.ServicerContext, needs_namespace: bool) -> None:
    """Validate the request's metadata and keep it for the services. Each RPC runs in a task
    of its own, with a copy of the context, so nothing needs resetting afterwards."""
    ns = lease = None
    for key, value in ctx.invocation_metadata() or ():
        if key == reqctx.NAMESPACE_KEY:
            ns = value
        elif key == reqctx.LEASE_KEY:
            lease = value
    if ns:
        if not identifiers.is_valid(ns):
            identifiers.validate(ns, "namespace")
    elif needs_namespace:
        raise _NamespaceRequired()
    reqctx.set_request(ns or None, lease)


class _NamespaceRequired(AgentError):
    pass


async def _abort(ctx: grpc.aio.ServicerContext, method: str, exc: BaseException) -> None:
    if isinstance(exc, _NamespaceRequired):
        await ctx.abort(grpc.StatusCode.FAILED_PRECONDITION, "namespace is required")
    if isinstance(exc, AgentError):
        await ctx.abort(code_of(exc), str(exc))
    log.exception("%s failed unexpectedly", method, exc_info=exc)
    await ctx.abort(grpc.StatusCode.UNKNOWN, f"internal error: {exc}")


def _wrap_unary(method: str, needs_ns: bool, fn: Callable) -> Callable:
    async def handler(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter_ns()
        failed = True
        try:
            _read_metadata(ctx, needs_ns)
            result = await fn(request, ctx)
            failed = False
            return result
        except Exception as exc:
            await _abort(ctx, method, exc)
        finally:
            STATS.record(method, time.perf_counter_ns() - start, failed)

    return handler


def _wrap_stream_out(method: str, needs_ns: bool, fn: Callable) -> Callable:
    async def handler(request: Any, ctx: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter_ns()
        failed = True
        try:
            _read_metadata(ctx, needs_ns)
            async for item in fn(request, ctx):
                yield item
            failed = False
        except Exception as exc:
            await _abort(ctx, method, exc)
        finally:
            STATS.record(method, time.perf_counter_ns() - start, failed)

    return handler


class RequestInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(self, continuation, details):  # noqa: ANN001
        method = details.method
        try:
            return self._cache[method]
        except KeyError:
            pass
        handler = await continuation(details)
        wrapped = self._wrap(method, handler) if handler is not None else None
        self._cache[method] = wrapped
        return wrapped

    @staticmethod
    def _wrap(method: str, h: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        needs_ns = not method.startswith(UNNAMESPACED)
        deser, ser = h.request_deserializer, h.response_serializer
        if h.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, needs_ns, h.unary_unary), deser, ser)
        if h.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(method, needs_ns, h.stream_unary), deser, ser)
        if h.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream_out(method, needs_ns, h.unary_stream), deser, ser)
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream_out(method, needs_ns, h.stream_stream), deser, ser)

"""The agent process: plugins loaded in order, gRPC services on a unix socket, clean stop."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal

import grpc

from agent import builtins, plugin
from agent.config import Config
from agent.server import listen
from agent.server.interceptor import RequestInterceptor
from agent.server.prometheus import PrometheusServer

log = logging.getLogger(__name__)

# Calls the transport may hold before the server takes them up (see where it is used).
MAX_PENDING_CALLS = 1 << 16


class GenericHandlersOnly:
    """What the generated `add_*Servicer_to_server` functions are given instead of the server.

    They register every method twice: as a generic handler and as a "registered method". The
    aio server keeps one pending future per registered method and waits on all of them
    (`asyncio.wait`) for every incoming call, about 0.07 ms a call for our ~55 methods. Served
    through the generic handlers alone, each call waits on one future."""

    def __init__(self, server: grpc.aio.Server):
        self._server = server

    def add_generic_rpc_handlers(self, handlers) -> None:  # noqa: ANN001
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: dict) -> None:
        pass  # the same handlers arrived through add_generic_rpc_handlers

    def __getattr__(self, name: str) -> object:
        return getattr(self._server, name)  # anything else is the server's own


class AgentServer:
    def __init__(self, config: Config):
        self.config = config
        self.plugins: plugin.PluginSet | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self._stop = asyncio.Event()
        self._lock_fd: int | None = None
        self.prometheus: PrometheusServer | None = None

    async def start(self) -> None:
        cfg = self.config
        os.umask(0o022)
        created = [d for d in (cfg.root, cfg.state) if not os.path.lexists(d)]
        try:
            await self._start()
        except BaseException:
            # Refused or failed: leave nothing behind of what this attempt made.
            await self.stop()
            for d in created:
                shutil.rmtree(d, ignore_errors=True)
            raise

    async def _start(self) -> None:
        cfg = self.config
        for d in (cfg.root, cfg.state):
            os.makedirs(d, mode=0o711, exist_ok=True)
        self._lock_fd = listen.lock_state_dir(cfg.state)
        listen.prepare_socket_path(cfg.address)
        builtins.load()
        self.plugins = await plugin.load(
            plugin.registrations(),
            root=cfg.root,
            state=cfg.state,
            disabled=set(cfg.disabled_plugins),
            required=set(cfg.required_plugins),
            plugin_config=cfg.plugins,
            server_config=cfg,
        )
        server = grpc.aio.server(
            interceptors=[RequestInterceptor()],
            options=[
                ("grpc.max_receive_message_length", cfg.max_recv_message_size),
                ("grpc.max_send_message_length", cfg.max_send_message_size),
                ("grpc.so_reuseport", 0),
                # grpc core drops calls beyond 1,000 not yet taken up by the aio server (which
                # takes them one at a time) as CANCELLED, so a burst of a few thousand calls
                # lost some with no reason given; Go's server, containerd's, queues them all.
                ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
                ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
            ],
        )
        registrar = GenericHandlersOnly(server)
        for p in self.plugins.ordered:
            register = getattr(p.instance, "register", None)
            if p.error is None and callable(register):
                register(registrar)
        # Bound under a private name, owner-only, given its group and mode, then renamed into
        # place: at the socket's path it is never wider, and accepting means ready.
        binding = listen.binding_path(cfg.address)
        umask = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix://{binding}")
            await server.start()
        finally:
            os.umask(umask)
        listen.secure_socket(binding, cfg.gid)
        os.rename(binding, cfg.address)
        self.grpc_server = server
        if cfg.metrics_address:
            # Plugins that have figures for Prometheus offer a `prometheus_lines` method.
            collectors = [p.instance.prometheus_lines for p in self.plugins.ordered
                          if p.error is None and hasattr(p.instance, "prometheus_lines")]
            self.prometheus = PrometheusServer(cfg.metrics_address, collectors)
            await self.prometheus.start()
        for p in self.plugins.ordered:
            if p.error is None and hasattr(p.instance, "serving"):
                p.instance.serving()  # the event exchange ends its start-up backlog
        log.info("serving on %s", cfg.address)

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        started = self.grpc_server is not None
        if self.prometheus is not None:
            await self.prometheus.stop()
            self.prometheus = None
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=1.0)
            self.grpc_server = None
            # Only the agent that bound the socket removes it.
            try:
                os.unlink(self.config.address)
            except FileNotFoundError:
                pass
        if self.plugins is not None:
            plugins, self.plugins = self.plugins, None
            await plugin.close_all(plugins)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if started:
            log.info("stopped")


async def serve(config: Config) -> None:
    server = AgentServer(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    try:
        await server.start()
        await server.wait()
    finally:
        await server.stop()

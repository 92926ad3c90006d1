"""The introspection service behaviour (`io.containerd.service.v1.introspection-service`):
every plugin of the loaded set with its status, and the server's UUID.

The plugin set is read at call time: the gRPC plugins load after this one. The UUID lives in
`<root>/io.containerd.service.v1.introspection-service/uuid`, so it survives restarts."""

from __future__ import annotations

import logging
import os
import platform as host
import uuid

from agent import filters, plugin
from agent.api.containerd.services.introspection.v1 import introspection_pb2 as api
from agent.api.containerd.types.platform_pb2 import Platform
from agent.api.google.rpc.status_pb2 import Status
from agent.server.status import code_of

log = logging.getLogger(__name__)

# Plugin types that run host code and so name the host's platform (containerd's choice too).
_PLATFORM_TYPES = (plugin.RUNTIME, plugin.TASK_MONITOR)

# uname machine -> OCI (architecture, variant)
_ARCH = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""), "i386": ("386", ""), "i686": ("386", ""),
    "aarch64": ("arm64", ""), "arm64": ("arm64", ""), "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"), "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""), "mips64": ("mips64", ""), "loongarch64": ("loong64", ""),
}


def host_platform() -> Platform:
    machine = host.machine()
    arch, variant = _ARCH.get(machine, (machine, ""))
    return Platform(os="linux", architecture=arch, variant=variant)


class IntrospectionLocal:
    def __init__(self, plugins: plugin.PluginSet, root: str):
        self._plugins = plugins
        self._cache: list[api.Plugin] = []
        self._uuid = load_uuid(os.path.join(root, "uuid"))

    def plugins(self, req: api.PluginsRequest) -> api.PluginsResponse:
        flt = filters.parse_all(req.filters)
        found = [p for p in self._all() if not flt.alternatives or flt.match(_adaptor(p))]
        return api.PluginsResponse(plugins=found)

    def server(self) -> api.ServerResponse:
        return api.ServerResponse(uuid=self._uuid)

    def _all(self) -> list[api.Plugin]:
        # Described afresh each time: exports change (the CRIU check, a new supervisor).
        return [describe(p) for p in self._plugins.ordered]


def describe(p: plugin.Plugin) -> api.Plugin:
    reg = p.registration
    out = api.Plugin(
        type=reg.type,
        id=reg.id,
        requires=list(reg.requires) + list(reg.optional),
        exports=p.exports,
        capabilities=list(reg.capabilities),
    )
    if reg.type in _PLATFORM_TYPES:
        out.platforms.append(host_platform())
    if p.error is not None:
        out.init_err.CopyFrom(init_error(p.error))
    return out


def init_error(err: BaseException) -> Status:
    """The status a failed plugin reports; a skipped one's message contains "skip plugin"."""
    if isinstance(err, plugin.SkipPlugin):
        code = 2  # UNKNOWN, as containerd's ErrSkipPlugin has no errdefs class
    else:
        code = code_of(err).value[0]
    return Status(code=code, message=str(err) or type(err).__name__)


def load_uuid(path: str) -> str:
    """Read the server UUID, or make and store one (written whole, then renamed into place)."""
    try:
        with open(path) as f:
            text = f.read().strip()
        return str(uuid.UUID(text))
    except FileNotFoundError:
        pass
    except ValueError:
        log.warning("server uuid file %s is not a UUID; writing a new one", path)
    value = str(uuid.uuid4())
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(value)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return value


def _adaptor(p: api.Plugin) -> filters.Adaptor:
    """containerd's fields: type and id. Platforms and capabilities are lists, which its
    filters cannot match, so (as in containerd) they never count as present."""

    def field(path: tuple[str, ...]) -> tuple[str, bool]:
        if path[0] == "type":
            return p.type, bool(p.type)
        if path[0] == "id":
            return p.id, bool(p.id)
        return "", False

    return field


plugin.register(plugin.Registration(
    type=plugin.SERVICE,
    id="introspection-service",
    init=lambda ic: IntrospectionLocal(ic.plugins, ic.root),
))

"""Agent configuration: defaults that work with nothing configured, a TOML file on top,
command-line flags on top of that. `taskagent config default` prints the full default."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

from agent import NAME, plugin

DEFAULT_ROOT = f"/var/lib/{NAME}"
DEFAULT_STATE = f"/run/{NAME}"
DEFAULT_ADDRESS = f"/run/{NAME}/{NAME}.sock"
MAX_MESSAGE_SIZE = 16 << 20  # containerd's client limit in each direction


class ConfigError(Exception):
    pass


@dataclass
class Config:
    root: str = DEFAULT_ROOT
    state: str = DEFAULT_STATE
    address: str = DEFAULT_ADDRESS
    # Group that may use the socket (mode 0660); 0 keeps it to root.
    gid: int = 0
    max_recv_message_size: int = MAX_MESSAGE_SIZE
    max_send_message_size: int = MAX_MESSAGE_SIZE
    # host:port for Prometheus text metrics; empty disables the endpoint.
    metrics_address: str = ""
    disabled_plugins: list[str] = field(default_factory=list)
    required_plugins: list[str] = field(
        default_factory=lambda: [f"{plugin.GRPC}.tasks", f"{plugin.SERVICE}.tasks-service"]
    )
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict)


def load(path: str | None) -> Config:
    cfg = Config()
    if not path:
        return cfg
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    return apply(cfg, raw, path)


def apply(cfg: Config, raw: dict[str, Any], source: str = "config") -> Config:
    known = {"version", "root", "state", "grpc", "metrics", "disabled_plugins",
             "required_plugins", "plugins"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{source}: unknown keys {', '.join(sorted(unknown))}")
    if raw.get("version", 1) != 1:
        raise ConfigError(f"{source}: only config version 1 is understood")
    for key in ("root", "state"):
        if key in raw:
            setattr(cfg, key, _string(raw[key], key, source))
    grpc = raw.get("grpc", {})
    if "address" in grpc:
        cfg.address = _string(grpc["address"], "grpc.address", source)
    for key in ("gid", "max_recv_message_size", "max_send_message_size"):
        if key in grpc:
            setattr(cfg, key, int(grpc[key]))
    metrics = raw.get("metrics", {})
    if "address" in metrics:
        # Empty is what `config default` prints: the endpoint off.
        if metrics["address"] != "":
            cfg.metrics_address = _string(metrics["address"], "metrics.address", source)
    for key in ("disabled_plugins", "required_plugins"):
        if key in raw:
            value = raw[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: {key} must be a list of plugin names")
            setattr(cfg, key, list(value))
    for uri, section in raw.get("plugins", {}).items():
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: plugins.{uri} must be a table")
        cfg.plugins[uri] = dict(section)
    return cfg


def _string(value: Any, key: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: {key} must be a non-empty string")
    return value


def default_toml(registrations: list[plugin.Registration]) -> str:
    """The full default configuration, every plugin section included."""
    cfg = Config()
    lines = [
        "version = 1",
        f"root = {_toml_value(cfg.root)}",
        f"state = {_toml_value(cfg.state)}",
        f"disabled_plugins = {_toml_value(cfg.disabled_plugins)}",
        f"required_plugins = {_toml_value(cfg.required_plugins)}",
        "",
        "[grpc]",
        f"  address = {_toml_value(cfg.address)}",
        f"  gid = {cfg.gid}",
        f"  max_recv_message_size = {cfg.max_recv_message_size}",
        f"  max_send_message_size = {cfg.max_send_message_size}",
        "",
        "[metrics]",
        f"  address = {_toml_value(cfg.metrics_address)}",
    ]
    for reg in registrations:
        if not reg.config:
            continue
        lines += ["", f'[plugins."{reg.uri}"]']
        lines += [f"  {k} = {_toml_value(v)}" for k, v in reg.config.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")

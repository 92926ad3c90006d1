"""The `taskagent` command: the daemon (`serve`), its configuration, and a small client
for people (`run`, `ps`, `exec`, ...)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

# Before grpc is imported: its fork handlers restart its threads in every forked child, where
# they can crash the child before it execs (the agent forks for criu and the supervisor).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from agent import NAME, __version__  # noqa: E402


def _serve(args: argparse.Namespace) -> int:
    from agent import config as configmod

    if os.geteuid() != 0:
        print(f"{NAME}: must run as root (it creates namespaces, cgroups and mounts)",
              file=sys.stderr)
        return 1
    try:
        cfg = configmod.load(args.config)
    except configmod.ConfigError as e:
        print(f"{NAME}: {e}", file=sys.stderr)
        return 1
    address = args.address or args.global_address
    if address:
        cfg.address = os.path.abspath(address)
    if args.root:
        cfg.root = os.path.abspath(args.root)
    if args.state:
        cfg.state = os.path.abspath(args.state)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    import uvloop

    from agent.plugin import PluginLoadError
    from agent.server.listen import ListenError
    from agent.server.server import serve

    try:
        uvloop.run(serve(cfg))
    except (PluginLoadError, ListenError) as e:
        print(f"{NAME}: {e}", file=sys.stderr)
        return 1
    return 0


def _config_default(_args: argparse.Namespace) -> int:
    from agent import builtins, config, plugin

    builtins.load()
    sys.stdout.write(config.default_toml(plugin.registrations()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=NAME, description="containerd-compatible task agent")
    p.add_argument("--version", action="version", version=f"{NAME} {__version__}")
    # Also accepted before the command, the way ctr takes them.
    p.add_argument("--address", "-a", dest="global_address", metavar="ADDRESS",
                   help="the agent's socket")
    p.add_argument("--namespace", "-n", dest="global_namespace", metavar="NAMESPACE",
                   help="namespace for client commands")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the agent (foreground, logs to stderr)")
    serve.add_argument("--address", "-a", help="unix socket path")
    serve.add_argument("--root", help="persistent data directory")
    serve.add_argument("--state", help="runtime state directory")
    serve.add_argument("--config", "-c", help="TOML configuration file")
    serve.add_argument("--log-level", "-l", default="info",
                       choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    cfg = sub.add_parser("config", help="configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    cfg_default = cfg_sub.add_parser("default", help="print the full default configuration")
    cfg_default.set_defaults(func=_config_default)

    from agent.cli import commands

    commands.add_client_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)

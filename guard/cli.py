"""guard's command line: ``serve``, ``check-config`` and the subcommands of each area.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error (areas may
define more, e.g. ``guard audit verify``).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from guard import __version__
from guard.config import Settings, load
from guard.errors import ConfigError

if TYPE_CHECKING:
    from guard.runtime import Runtime

# Areas that add their own subcommands through ``register(subparsers)``.
_AREA_CLIS = ("guard.auth.cli", "guard.policy.cli", "guard.audit.cli", "guard.pii.cli", "guard.certs", "guard.demo.cli",
              "guard.connect")


def _load_or_report(path: str) -> Settings | None:
    try:
        return load(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return None


def build_or_report(settings: Settings) -> Runtime | None:
    """Build the runtime, or print every problem (missing key, broken policy, ...) and return None."""
    from guard.runtime import build_runtime

    try:
        return build_runtime(settings)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return None


def missing_commands(settings: Settings) -> list[str]:
    """A problem line for each stdio upstream whose command cannot be started (not found / not executable)."""
    import os
    import shutil

    problems = []
    for name, upstream in sorted(settings.upstreams.items()):
        command = upstream.command
        if upstream.transport != "stdio" or not command:
            continue
        if os.sep in command:
            path = command if os.path.isabs(command) or upstream.cwd is None else os.path.join(upstream.cwd, command)
            found = os.path.isfile(path) and os.access(path, os.X_OK)
        else:
            found = shutil.which(command) is not None
        if not found:
            problems.append(f"upstreams.{name}.command: {command!r} not found or not executable "
                            "(install it, or give its full path)")
    return problems


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 2
    commands = missing_commands(settings)
    if commands:
        print(f"{args.config}: {len(commands)} problem(s):", file=sys.stderr)
        for problem in commands:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    if build_or_report(settings) is None:
        return 2
    for warning in settings.pii.rules.warnings() if settings.pii.enabled else []:
        print(f"warning: {warning}")
    print(f"{args.config}: OK ({len(settings.upstreams)} upstream(s): {', '.join(sorted(settings.upstreams))})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 2
    server = settings.server
    if args.host is not None:
        server = replace(server, host=args.host)
    if args.port is not None:
        server = replace(server, port=args.port)
    settings = replace(settings, server=server)
    from guard import logs
    from guard.server import endpoints, serve

    logs.configure(settings.server.log_level)
    if not _lock_audit(settings, args.workers):
        return 1
    if args.workers > 1:
        from guard.workers import for_worker, supervise

        print("guard: with --workers > 1, a legacy Streamable HTTP session (Mcp-Session-Id) lives in one worker; "
              "its later requests may reach another and get 404 (WebSocket and 2026-07-28 requests are unaffected; "
              "see docs/operators.md)", file=sys.stderr)

        # validate once in the supervisor so a broken key or policy fails fast
        if build_or_report(for_worker(settings, 0, args.workers)) is None:
            return 2
        return supervise(settings, args.workers)
    runtime = build_or_report(settings)
    if runtime is None:
        return 2
    sock = bind_or_report(settings.server.host, settings.server.port)
    if sock is None:
        return 1

    def ready() -> None:
        urls = ", ".join(endpoints(settings, sock.getsockname()[1]))
        print(f"guard is listening: {urls} (Streamable HTTP and WebSocket)", file=sys.stderr, flush=True)

    serve(runtime, [sock], on_ready=ready)
    return 0


def _lock_audit(settings: Settings, workers: int) -> bool:
    """Take each audit chain's lock before anything touches the log or binds the port (issue 15).

    ``False`` after one clear line naming the holder's pid: another guard writes this chain.
    """
    if not settings.audit.enabled:
        return True
    from guard.audit import lock
    from guard.errors import AuditError
    from guard.workers import for_worker

    try:
        for index in range(max(1, workers)):
            lock.hold(for_worker(settings, index, workers).audit.path)
    except AuditError as exc:
        print(f"guard: {exc}", file=sys.stderr)
        return False
    return True


def bind_or_report(host: str, port: int) -> socket.socket | None:
    """The listening socket, or ``None`` after one clear line on stderr (e.g. the port is taken)."""
    from guard.server import listening_socket

    try:
        return listening_socket(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"guard: port {port} on {host} is already in use (is another guard running?); "
                  "stop it or choose another port with --port", file=sys.stderr)
        else:
            print(f"guard: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guard", description="Security policy enforcement proxy for MCP.")
    parser.add_argument("--version", action="version", version=f"guard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="run the proxy")
    p.add_argument("--config", "-c", required=True, help="TOML configuration file")
    p.add_argument("--host", help="override server.host")
    p.add_argument("--port", type=int, help="override server.port")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes sharing the port (each with its own audit chain); default 1")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate a configuration file and list every problem")
    p.add_argument("config", help="TOML configuration file")
    p.set_defaults(func=cmd_check_config)

    for module_name in _AREA_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

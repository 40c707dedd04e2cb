"""guard's command line: ``serve``, ``check-config`` and the subcommands of each area.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error (areas may
define more, e.g. ``guard audit verify``).
"""

from __future__ import annotations

import argparse
import importlib
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


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load_or_report(args.config)
    if settings is None:
        return 2
    if build_or_report(settings) is None:
        return 2
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
    from guard.server import serve

    logs.configure(settings.server.log_level)
    if args.workers > 1:
        from guard.workers import for_worker, supervise

        # validate once in the supervisor so a broken key or policy fails fast
        if build_or_report(for_worker(settings, 0, args.workers)) is None:
            return 2
        return supervise(settings, args.workers)
    runtime = build_or_report(settings)
    if runtime is None:
        return 2
    serve(runtime)
    return 0


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

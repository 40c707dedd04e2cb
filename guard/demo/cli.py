"""``guard demo``: guard in front of the bundled demo server, with every security stage on.

Creates (once) dev keys under ``dev/keys`` and the demo's own copy of the policy files under
``dev/policies``, writes ``dev/guard.toml`` (JWT auth with the dev key, that Casbin policy and
PII rules, a signed audit log under ``dev/audit``), mints tokens for three demo users
(``dev/tokens/<user>.token``), and serves; once guard is listening it prints how to connect
and the one command of the tour (``guard demo tour``). Development only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

DEMO_USERS = (("alice", "analyst"), ("bob", "support"), ("carol", "admin"))
DEFAULT_URL = "http://127.0.0.1:8787/mcp/demo"


POLICY_FILES = ("model.conf", "policy.csv", "pii.toml", "policy_tests.toml")


def _policies_dir() -> Path:
    for candidate in (Path.cwd() / "policies", Path(__file__).resolve().parents[2] / "policies"):
        if (candidate / "policy.csv").exists():
            return candidate
    raise FileNotFoundError("cannot find the policies/ directory; run guard demo from the repository root")


def copy_policies(dev: Path) -> Path:
    """The demo's own copy of the shipped policy files, under ``dev/policies``.

    Copied once: later runs keep the user's edits (so editing them never dirties the
    repository, and a restart does not undo them).
    """
    target = dev / "policies"
    target.mkdir(parents=True, exist_ok=True)
    source = _policies_dir()
    for name in POLICY_FILES:
        if not (target / name).exists() and (source / name).exists():
            shutil.copyfile(source / name, target / name)
    return target


def demo_config(dev: Path, policies: Path, port: int) -> str:
    """The demo's configuration file (TOML text)."""
    keys = dev / "keys"

    def q(value: Any) -> str:
        return json.dumps(str(value))

    return f"""# Written by `guard demo`. Development only: the keys in {keys} are dev keys.
[server]
host = "127.0.0.1"
port = {port}

[upstreams.demo]
command = {q(sys.executable)}
args = ["-m", "guard.demo"]

[auth]
audience = "guard-dev"

[[auth.issuers]]
issuer = "guard-dev"
algorithms = ["ES256"]
public_keys = [{q(keys / "auth-signing-key.pub.pem")}]

[policy]
policy = {q(policies / "policy.csv")}
model = {q(policies / "model.conf")}

[pii]
rules = {q(policies / "pii.toml")}
deployment_id = "guard-demo"
keyring_file = {q(keys / "pii-keyring.json")}

[audit]
path = {q(dev / "audit" / "guard-audit.jsonl")}
signing_key = {q(keys / "audit-signing-key.pem")}
checkpoint_every = 50
checkpoint_interval = 10
"""


def prepare(dev: Path, port: int) -> tuple[Path, dict[str, str]]:
    """Keys, config and tokens for the demo; returns the config path and a token per user."""
    from guard import devkeys
    from guard.auth.cli import mint_dev_token

    keys = dev / "keys"
    if not (keys / devkeys.AUTH_PRIVATE_KEY).exists():
        devkeys.generate_all(keys)
    else:
        devkeys.generate_all(keys, overwrite=False)
    (dev / "audit").mkdir(parents=True, exist_ok=True)
    policies = copy_policies(dev)
    config = dev / "guard.toml"
    config.write_text(demo_config(dev.resolve(), policies.resolve(), port), encoding="utf-8")
    signing = devkeys.load_dev_signing_key(keys)
    tokens = {
        user: mint_dev_token(signing, subject=user, roles=[role], ttl=8 * 3600, audience=["guard-dev"],
                             issuer="guard-dev", extra={})
        for user, role in DEMO_USERS
    }
    (dev / "tokens.json").write_text(json.dumps(tokens, indent=2), encoding="utf-8")
    token_dir = dev / "tokens"
    devkeys.ensure_dir(token_dir)
    for user, token in tokens.items():
        devkeys.write_private(token_dir / f"{user}.token", token.encode("ascii") + b"\n")
    return config, tokens


def instructions(url: str, dev: Path) -> str:
    """What ``guard demo`` prints once guard is listening (every command pasteable as is)."""
    guard = _guard_command()
    lines = [
        "",
        f"guard demo is listening on {url}",
        "  (Streamable HTTP; WebSocket clients use the same path with ws://), in front of the bundled demo server.",
        "",
        "Users and their tokens (8 h):",
    ]
    lines += [f"  {user:<6} role {role:<8} {dev}/tokens/{user}.token" for user, role in DEMO_USERS]
    lines += [
        "",
        "Take the tour in another terminal (an allowed call, a denied one with its reason, a PII token, a reveal):",
        f"  {guard} demo tour --dir {dev}" + ("" if url == DEFAULT_URL else f" --url {url}"),
        "",
        "Connect a host:",
        f"  claude mcp add --transport http guard-demo {url} \\",
        f"      --header \"Authorization: Bearer $(cat {dev}/tokens/alice.token)\"",
        "  Claude Desktop and other hosts that launch commands: guard connect (docs/clients.md)",
        "",
        "alice (analyst) sees protected values as <pii:...> tokens and cannot delete; bob (support) may",
        "send_message to an @example.com address, also as its token (guard restores it upstream);",
        "carol (admin) may do everything but delete C001 (legal hold).",
        f"Edit {dev}/policies/policy.csv and guard reloads it live (your copy: the repository is untouched).",
        f"Audit log: {dev}/audit/  verify it:",
        f"  {guard} audit verify {dev}/audit --key {dev}/keys/audit-signing-key.pub.pem",
        "Stop with Ctrl-C.",
        "",
    ]
    return "\n".join(lines)


def _guard_command() -> str:
    """How to run guard again from this shell: the venv's script when it is not on PATH."""
    script = Path(sys.executable).with_name("guard")
    found = shutil.which("guard")
    if found is not None and Path(found).resolve() == script.resolve():
        return "guard"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def cmd_demo(args: argparse.Namespace) -> int:
    from guard import logs
    from guard.cli import _load_or_report, _lock_audit, bind_or_report, build_or_report
    from guard.server import endpoints, serve

    try:
        import mcp  # noqa: F401  (the demo upstream is written with the official SDK)
    except ImportError:
        print("guard demo needs the demo extra: pip install -e '.[demo]'", file=sys.stderr)
        return 2
    dev = Path(args.dir)
    try:
        config, _ = prepare(dev, args.port)
    except (OSError, FileNotFoundError) as exc:
        print(f"guard demo: {exc}", file=sys.stderr)
        return 1
    settings = _load_or_report(str(config))
    if settings is None:
        return 2
    if args.no_serve:
        print(instructions(endpoints(settings, args.port)[0], dev), flush=True)
        return 0
    if not _lock_audit(settings, 1):  # as `guard serve`: before the log is touched or the port bound
        return 1
    sock = bind_or_report(settings.server.host, settings.server.port)
    if sock is None:
        return 1
    logs.configure("warning")
    runtime = build_or_report(settings)
    if runtime is None:
        sock.close()
        return 2
    url = endpoints(settings, sock.getsockname()[1])[0]
    serve(runtime, [sock], on_ready=lambda: print(instructions(url, dev), flush=True))
    return 0


def cmd_tour(args: argparse.Namespace) -> int:
    from guard.demo.tour import run_tour

    return run_tour(Path(args.dir), args.url)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="run guard in front of the bundled demo MCP server (dev keys, tokens)")
    p.add_argument("--dir", default="dev", help="where keys, config, tokens and the audit log go (default: dev)")
    p.add_argument("--port", type=int, default=8787, help="port to listen on (default 8787)")
    p.add_argument("--no-serve", action="store_true", help="prepare and print, but do not start guard")
    p.set_defaults(func=cmd_demo)
    demo_sub = p.add_subparsers(dest="demo_command", metavar="")
    t = demo_sub.add_parser("tour", help="a scripted walk through the running demo: allow, deny, PII token, reveal")
    t.add_argument("--dir", default="dev", help="the demo's directory (tokens, audit log); default: dev")
    t.add_argument("--url", default=DEFAULT_URL, help=f"the demo endpoint (default {DEFAULT_URL})")
    t.set_defaults(func=cmd_tour)

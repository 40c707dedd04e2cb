"""``guard demo``: guard in front of the bundled demo server, with every security stage on.

Creates (once) dev keys under ``dev/keys``, writes ``dev/guard.toml`` (JWT auth with the dev
key, the shipped Casbin policy, the PII rules, a signed audit log under ``dev/audit``), mints
tokens for three demo users, prints how to connect, and serves. Development only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEMO_USERS = (("alice", "analyst"), ("bob", "support"), ("carol", "admin"))


def _policies_dir() -> Path:
    for candidate in (Path.cwd() / "policies", Path(__file__).resolve().parents[2] / "policies"):
        if (candidate / "policy.csv").exists():
            return candidate
    raise FileNotFoundError("cannot find the policies/ directory; run guard demo from the repository root")


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
    config = dev / "guard.toml"
    config.write_text(demo_config(dev.resolve(), _policies_dir(), port), encoding="utf-8")
    signing = devkeys.load_dev_signing_key(keys)
    tokens = {
        user: mint_dev_token(signing, subject=user, roles=[role], ttl=8 * 3600, audience=["guard-dev"],
                             issuer="guard-dev", extra={})
        for user, role in DEMO_USERS
    }
    (dev / "tokens.json").write_text(json.dumps(tokens, indent=2), encoding="utf-8")
    return config, tokens


def instructions(port: int, tokens: dict[str, str], dev: Path) -> str:
    url = f"ws://127.0.0.1:{port}/mcp/demo"
    lines = [
        "",
        f"guard demo: guard listens on {url} (subprotocol mcp), in front of the bundled demo MCP server",
        "",
        f"Tokens (8 h; also in {dev}/tokens.json):",
    ]
    for (user, role), token in zip(DEMO_USERS, tokens.values(), strict=True):
        lines.append(f"  {user:<6} role {role:<8} {token}")
    lines += [
        "",
        "Connect with the official Python SDK 2.x and guard's WebSocket transport:",
        "",
        "  .venv/bin/python - <<'PY'",
        "  import asyncio, json",
        "  from mcp import Client",
        "  from guard.client import websocket_client",
        f"  token = json.load(open('{dev}/tokens.json'))['alice']",
        "  async def main():",
        f"      async with Client(websocket_client('{url}', headers={{'Authorization': f'Bearer {{token}}'}})) as c:",
        "          print([t.name for t in (await c.list_tools()).tools])",
        "          print((await c.call_tool('find_customer', {'query': 'Johnson'})).content[0].text)",
        "  asyncio.run(main())",
        "  PY",
        "",
        "alice (analyst) sees protected values as <pii:...> tokens and cannot delete; bob (support) may",
        "send_message to an @example.com address, also as its token (guard restores it upstream);",
        "carol (admin) may do everything but delete C001 (legal hold).",
        f"Audit log: {dev}/audit/guard-audit.jsonl  (verify: guard audit verify {dev}/audit "
        f"--key {dev}/keys/audit-signing-key.pub.pem)",
        "Stop with Ctrl-C.",
        "",
    ]
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from guard import logs
    from guard.cli import _load_or_report, build_or_report
    from guard.server import serve

    try:
        import mcp  # noqa: F401  (the demo upstream is written with the official SDK)
    except ImportError:
        print("guard demo needs the demo extra: pip install -e '.[demo]'", file=sys.stderr)
        return 2
    dev = Path(args.dir)
    try:
        config, tokens = prepare(dev, args.port)
    except (OSError, FileNotFoundError) as exc:
        print(f"guard demo: {exc}", file=sys.stderr)
        return 1
    settings = _load_or_report(str(config))
    if settings is None:
        return 2
    print(instructions(args.port, tokens, dev), flush=True)
    if args.no_serve:
        return 0
    logs.configure("warning")
    runtime = build_or_report(settings)
    if runtime is None:
        return 2
    serve(runtime)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="run guard in front of the bundled demo MCP server (dev keys, tokens)")
    p.add_argument("--dir", default="dev", help="where keys, config, tokens and the audit log go (default: dev)")
    p.add_argument("--port", type=int, default=8787, help="port to listen on (default 8787)")
    p.add_argument("--no-serve", action="store_true", help="prepare and print, but do not start guard")
    p.set_defaults(func=cmd_demo)

"""``guard pii ...``: try the rules on a message, and manage PII key rings.

::

    guard pii scan MESSAGE.json [--rules policies/pii.toml] [--direction to_client|to_server]
                                [--server NAME] [--keyring FILE]
    guard pii keys generate FILE [--kid k1]
    guard pii keys rotate FILE [--kid k2]

``scan`` reads one JSON-RPC message (``-`` for stdin), prints the findings (entity type,
path, action, score; never values) on stderr and the protected message on stdout. Without
``--keyring`` it uses a throw-away ring, so tokens it prints cannot be opened later.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from guard import configtools as ct


def _cmd_scan(args: argparse.Namespace) -> int:
    from guard.errors import InvalidRequest, ParseError
    from guard.jsonrpc import parse
    from guard.mcp import target_of
    from guard.pii.engine import Analyzer
    from guard.pii.keys import KeyRingError, load_keyring_file, new_keyring
    from guard.pii.protect import Protector
    from guard.pii.rules import load_rules

    problems = ct.Problems()
    rules = load_rules(Path(args.rules), problems)
    if problems:
        for p in problems.items:
            print(f"  - {p}", file=sys.stderr)
        return 2
    try:
        ring = load_keyring_file(Path(args.keyring)) if args.keyring else new_keyring()
    except KeyRingError as exc:
        print(f"guard pii scan: {exc}", file=sys.stderr)
        return 2
    text = sys.stdin.read() if args.message == "-" else Path(args.message).read_text(encoding="utf-8")
    try:
        message = parse(text)
    except (ParseError, InvalidRequest) as exc:
        print(f"guard pii scan: {exc}", file=sys.stderr)
        return 2
    to_client = args.direction == "to_client"
    method = message.method or args.method
    tool = target_of(method, message.params) if message.method else args.tool
    protector = Protector(Analyzer(rules.detected_entities(), rules.recognizers), rules, ring, args.deployment_id)
    outcome = protector.protect(message.payload, message.kind, method, to_client, args.server, tool)
    for f in outcome.findings:
        print(f"{f.entity_type:16} {f.action:10} {f.score:.2f}  {f.path}", file=sys.stderr)
    if outcome.rejection is not None:
        print(f"rejected: {outcome.rejection.code.name} ({outcome.rejection.reason})", file=sys.stderr)
        return 1
    out: Any = outcome.payload if outcome.payload is not None else message.payload
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from guard.pii.keys import KeyRingError, generate_keyring

    try:
        ring = generate_keyring(Path(args.file), kid=args.kid)
    except (KeyRingError, ValueError, OSError) as exc:
        print(f"guard pii keys generate: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.file} (primary key {ring.primary}; mode 0600; keep it out of git)")
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    from guard.pii.keys import KeyRingError, rotate_keyring

    try:
        ring = rotate_keyring(Path(args.file), new_kid=args.kid)
    except (KeyRingError, ValueError) as exc:
        print(f"guard pii keys rotate: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: primary key is now {ring.primary}; older keys ({', '.join(ring.key_ids[:-1])}) "
          "still open existing tokens")
    return 0


def register(subparsers: Any) -> None:
    """Add ``pii`` to guard's command line."""
    pii = subparsers.add_parser("pii", help="PII rules and key rings")
    sub = pii.add_subparsers(dest="pii_command", metavar="ACTION", required=True)
    scan = sub.add_parser("scan", help="protect one JSON-RPC message with the rules and show the findings")
    scan.add_argument("message", help="file with one JSON-RPC message, or - for stdin")
    scan.add_argument("--rules", default="policies/pii.toml", help="rules file (default: policies/pii.toml)")
    scan.add_argument("--direction", choices=("to_client", "to_server"), default="to_client")
    scan.add_argument("--server", default="demo", help="server name for per-server overrides")
    scan.add_argument("--method", default="tools/call", help="request method, for a response message")
    scan.add_argument("--tool", default=None, help="tool name, for a response message")
    scan.add_argument("--keyring", help="key ring file (default: a throw-away ring)")
    scan.add_argument("--deployment-id", default="guard")
    scan.set_defaults(func=_cmd_scan)
    keys = sub.add_parser("keys", help="PII key rings")
    ksub = keys.add_subparsers(dest="pii_keys_command", metavar="ACTION", required=True)
    gen = ksub.add_parser("generate", help="create a one-key ring file (mode 0600)")
    gen.add_argument("file")
    gen.add_argument("--kid", default="k1")
    gen.set_defaults(func=_cmd_generate)
    rot = ksub.add_parser("rotate", help="add a new primary key; old keys keep opening old tokens")
    rot.add_argument("file")
    rot.add_argument("--kid", default=None)
    rot.set_defaults(func=_cmd_rotate)

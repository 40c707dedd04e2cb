"""``guard audit verify|query|report|keygen``: the audit log's command line.

Exit codes of ``verify`` (distinct from argparse's 2 for usage errors):
0 intact, 3 unverifiable (missing key/files, nothing signed), 4 intact up to a torn
final line (guard stopped mid-write), 5 tampered, 6 intact but requests in flight at crash
(forwarded, outcome never recorded: guard was killed, or is still running). Precedence when
several apply: 5, 3, 6, 4. Several chains (``--workers``, a fleet of replicas: one chain per
replica, worker and log path) are verified each on its own; the worst status wins. ``query``, ``report`` and
``keygen`` exit 0 on success, 1 when files cannot be read or written, 2 on usage.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

from guard.audit import query, report
from guard.audit.fleet import verify_fleet
from guard.crypto.signing import KeyFileError, VerifyKey, generate_signing_key, load_verify_key

EXIT_ERROR = 1
EXIT_USAGE = 2


def _sources(args: argparse.Namespace) -> tuple[list[str], list[str], list[VerifyKey]] | int:
    """Paths, checkpoint files and public keys from the arguments (and ``--config``)."""
    paths = list(args.paths)
    checkpoints = list(getattr(args, "checkpoints", None) or [])
    keys: list[VerifyKey] = []
    for key_path in getattr(args, "key", None) or []:
        try:
            keys.append(load_verify_key(key_path))
        except KeyFileError as exc:
            print(f"guard audit: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.config:
        from guard.config import load
        from guard.errors import ConfigError

        try:
            settings = load(args.config)
        except ConfigError as exc:
            print(f"guard audit: {args.config}: {'; '.join(exc.problems)}", file=sys.stderr)
            return EXIT_USAGE
        audit = settings.audit
        if not paths:
            paths.append(str(audit.path.parent))
        if audit.checkpoint_path is not None and audit.checkpoint_path.exists():
            checkpoints.append(str(audit.checkpoint_path))
        if audit.signing_key is not None and not keys:
            try:
                keys.append(load_verify_key(audit.signing_key))
            except KeyFileError as exc:
                print(f"guard audit: {exc}", file=sys.stderr)
    if not paths:
        print("guard audit: give audit files, directories or globs (or --config)", file=sys.stderr)
        return EXIT_USAGE
    return paths, checkpoints, keys


def cmd_verify(args: argparse.Namespace) -> int:
    sources = _sources(args)
    if isinstance(sources, int):
        return sources
    paths, checkpoints, keys = sources
    result = verify_fleet(paths, keys=keys, checkpoint_files=checkpoints)
    if args.format == "json":
        import orjson

        print(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode("utf-8"))
    else:
        print(result.render())
    return result.exit_code


def _window(args: argparse.Namespace, now: float) -> tuple[float | None, float | None] | int:
    try:
        since = query.parse_when(args.since, now) if args.since else None
        until = query.parse_when(args.until, now) if args.until else None
    except ValueError:
        print("guard audit: --since/--until take RFC 3339 times, dates or ages like 15m, 2h, 7d",
              file=sys.stderr)
        return EXIT_USAGE
    return since, until


def cmd_query(args: argparse.Namespace) -> int:
    sources = _sources(args)
    if isinstance(sources, int):
        return sources
    window = _window(args, time.time())
    if isinstance(window, int):
        return window
    filters = query.Filters(
        since=window[0], until=window[1], subject=args.subject, server=args.server, tool=args.tool,
        decision=args.decision, entity_type=args.entity_type, include_internal=args.all,
    )
    records = query.select(sources[0], filters)
    if args.limit is not None:
        records = itertools.islice(records, max(0, args.limit))
    formats = {"json": query.format_json, "csv": query.format_csv, "table": query.format_table}
    lines = formats[args.format](records)
    try:
        for line in lines:
            print(line)
    except OSError as exc:
        print(f"guard audit query: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    sources = _sources(args)
    if isinstance(sources, int):
        return sources
    now = time.time()
    window = _window(args, now)
    if isinstance(window, int):
        return window
    paths, checkpoints, keys = sources
    document = report.render(paths, since=window[0], until=window[1], keys=keys, checkpoint_files=checkpoints,
                             now=now, title=args.title, subject=args.subject, server=args.server)
    try:
        Path(args.out).write_text(document, encoding="utf-8")
    except OSError as exc:
        print(f"guard audit report: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {args.out}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from guard.devkeys import write_private

    out = Path(args.out)
    public = out.with_name(out.name.removesuffix(".pem") + ".pub.pem")
    if out.exists() and not args.force:
        print(f"guard audit keygen: {out} exists (use --force to replace it)", file=sys.stderr)
        return EXIT_ERROR
    key = generate_signing_key()
    try:
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(out, key.private_pem())
        public.write_bytes(key.public.public_pem())
    except OSError as exc:
        print(f"guard audit keygen: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"key id {key.key_id}\n  private: {out} (set [audit] signing_key)\n  public:  {public} "
          "(give to auditors: guard audit verify --key)")
    return 0


def _common(p: argparse.ArgumentParser, keys: bool = True) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="audit files, directories or globs, any order")
    p.add_argument("--config", "-c", help="take the log directory, checkpoint file and key from this config")
    if keys:
        p.add_argument("--key", action="append", metavar="PEM",
                       help="Ed25519 public key (or private key) to check checkpoint signatures; repeatable")
        p.add_argument("--checkpoints", action="append", metavar="FILE",
                       help="separate checkpoint file (audit.checkpoint_path); repeatable")


def register(subparsers: Any) -> None:
    """Add ``guard audit ...`` to the main parser's subparsers."""
    audit = subparsers.add_parser("audit", help="verify, query and report on the tamper-evident audit log")
    sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    p = sub.add_parser("verify", help="check hash chain and signed checkpoints (exit 0/3/4/5/6)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("query", help="filter records (table or JSON Lines)")
    _common(p, keys=False)
    p.add_argument("--since", help="RFC 3339 time, date, or age like 15m, 2h, 7d")
    p.add_argument("--until", help="RFC 3339 time, date, or age (exclusive)")
    p.add_argument("--subject", help="user.name (wildcards allowed)")
    p.add_argument("--server", help="upstream server name (wildcards allowed)")
    p.add_argument("--tool", help="tool / resource / prompt name (wildcards allowed)")
    p.add_argument("--decision", choices=("allow", "deny"))
    p.add_argument("--entity-type", dest="entity_type", help="PII entity type, e.g. EMAIL_ADDRESS")
    p.add_argument("--all", action="store_true", help="include the writer's own records (headers, checkpoints)")
    p.add_argument("--limit", type=int, help="print at most this many records")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="csv: one row per record, RFC 4180, header first (for spreadsheets)")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("report", help="write a self-contained HTML report")
    _common(p)
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--since", help="RFC 3339 time, date, or age like 7d")
    p.add_argument("--until", help="RFC 3339 time, date, or age (exclusive)")
    p.add_argument("--title", default="guard audit report")
    p.add_argument("--subject", help="only this subject's records (user.name, wildcards allowed)")
    p.add_argument("--server", help="only this upstream server's records (wildcards allowed)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("keygen", help="generate an Ed25519 checkpoint signing key")
    p.add_argument("--out", required=True, help="private key file to write (0600); PUBLIC goes to *.pub.pem")
    p.add_argument("--force", action="store_true", help="replace an existing key file")
    p.set_defaults(func=cmd_keygen)

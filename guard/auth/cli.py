"""Dev tooling: ``guard keys generate`` and ``guard token mint``.

::

    guard keys generate [--dir dev/keys] [--alg ES256|RS256] [--force]
    guard token mint --sub alice --role analyst --ttl 1h [--aud guard-dev] [--iss guard-dev]

The minted token is signed with the dev key and printed on stdout (nothing else is),
so ``TOKEN=$(guard token mint --sub alice)`` works. For development only.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jwt

from guard import devkeys

DEV_ISSUER = "guard-dev"
DEV_AUDIENCE = "guard-dev"
MAX_TTL = 30 * 86400
_TTL = re.compile(r"([0-9]+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d`` -> seconds (1 s .. 30 d)."""
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 1h, 2d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_TTL:
        raise ValueError("ttl must be between 1 second and 30 days")
    return seconds


def mint_dev_token(
    key: devkeys.DevSigningKey,
    *,
    subject: str,
    roles: Sequence[str] = (),
    ttl: int = 3600,
    audience: Sequence[str] = (DEV_AUDIENCE,),
    issuer: str = DEV_ISSUER,
    extra: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    """A signed access token for local testing (``typ: at+jwt``, RFC 9068 claims)."""
    now = int(clock())
    claims: dict[str, Any] = dict(extra or {})
    claims.update({
        "iss": issuer,
        "sub": subject,
        "aud": audience[0] if len(audience) == 1 else list(audience),
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(12),
        "roles": list(roles),
    })
    return jwt.encode(claims, key.private_pem, algorithm=key.algorithm,
                      headers={"kid": key.kid, "typ": "at+jwt"})


def _claim(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("use NAME=VALUE")
    return name, value


def cmd_keys_generate(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        results = devkeys.generate_all(directory, overwrite=args.force, auth_algorithm=args.alg)
    except (OSError, ValueError) as exc:
        print(f"guard keys generate: {exc}", file=sys.stderr)
        return 1
    for result in results:
        state = "created" if result.created else "kept existing (use --force to replace)"
        details = " ".join(f"{k}={v}" for k, v in result.details.items())
        print(f"{result.kind}: {state} {details}".rstrip())
        for path in result.files:
            print(f"  {path}")
    print("development keys only: keep them out of git (dev/ is ignored) and out of production")
    return 0


def cmd_token_mint(args: argparse.Namespace) -> int:
    try:
        ttl = parse_ttl(args.ttl)
        key = devkeys.load_dev_signing_key(Path(args.dir))
    except FileNotFoundError:
        print(f"guard token mint: no dev key in {args.dir}; run 'guard keys generate' first", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as exc:
        print(f"guard token mint: {exc}", file=sys.stderr)
        return 1
    extra: dict[str, Any] = dict(args.claim or [])
    if args.tenant:
        extra["tenant"] = args.tenant
    token = mint_dev_token(key, subject=args.sub, roles=args.role or [], ttl=ttl,
                           audience=args.aud or [DEV_AUDIENCE], issuer=args.iss, extra=extra)
    print(token)
    return 0


def register(subparsers: Any) -> None:
    """Add ``keys`` and ``token`` to guard's command line."""
    keys = subparsers.add_parser("keys", help="development key tooling")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = keys_sub.add_parser("generate", help="write dev keys (JWT signing key pair, JWKS) to a dev dir")
    gen.add_argument("--dir", default=str(devkeys.DEFAULT_DIR), help="output directory (default: dev/keys)")
    gen.add_argument("--alg", choices=devkeys.DEV_ALGORITHMS, default="ES256", help="JWT signing algorithm")
    gen.add_argument("--force", action="store_true", help="replace existing keys")
    gen.set_defaults(func=cmd_keys_generate)

    token = subparsers.add_parser("token", help="development access tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    mint = token_sub.add_parser("mint", help="print a JWT signed with the dev key")
    mint.add_argument("--sub", required=True, help="subject (user id)")
    mint.add_argument("--role", action="append", help="role (repeatable)")
    mint.add_argument("--ttl", default="1h", help="lifetime, e.g. 90s, 15m, 1h, 2d (default 1h)")
    mint.add_argument("--aud", action="append", help=f"audience (repeatable; default {DEV_AUDIENCE})")
    mint.add_argument("--iss", default=DEV_ISSUER, help=f"issuer (default {DEV_ISSUER})")
    mint.add_argument("--tenant", help="tenant claim")
    mint.add_argument("--claim", action="append", type=_claim,
                      help="extra string claim NAME=VALUE (repeatable)")
    mint.add_argument("--dir", default=str(devkeys.DEFAULT_DIR), help="dev key directory (default: dev/keys)")
    mint.set_defaults(func=cmd_token_mint)

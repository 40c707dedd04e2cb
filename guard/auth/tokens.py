"""JWT checks, one small validator per rule (compare pyjwt's ``_validate_*``). No I/O.

The order matters and follows RFC 8725: size first (before any parsing), then the
JOSE header against configuration (``alg`` from the issuer's fixed list, ``none`` in
any casing refused, no ``crit`` extensions), then the signature, then the claims
(``iss`` exact, ``exp`` required, ``nbf``/``iat``, ``aud``, required claims).

Every failure raises :class:`TokenRejectedError` with a stable ``reason`` code; the
message never contains token contents.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.api_jws import PyJWS

from guard.errors import AuthenticationError

MAX_KID_CHARS = 256
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_KID = re.compile(r"[\x20-\x7e]+")
_JWS = PyJWS(options={"verify_signature": True, "enforce_minimum_key_length": True})


class TokenRejectedError(AuthenticationError):
    """A token failed a check. ``reason`` is a stable code safe for logs and audit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class UnverifiedToken:
    """Header and claims decoded *without* verification: for routing and key selection only."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]


def _b64_json(segment: str) -> Any:
    if not _SEGMENT.fullmatch(segment):
        raise TokenRejectedError("malformed_token")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise TokenRejectedError("malformed_token") from None


def parse_unverified(token: str, max_bytes: int) -> UnverifiedToken:
    """Split a compact JWS after checking its size. JWE (5 parts) and detached forms are refused."""
    if len(token) > max_bytes or len(token.encode("utf-8", "surrogatepass")) > max_bytes:
        raise TokenRejectedError("token_too_large")
    parts = token.split(".")
    if len(parts) != 3 or not parts[2]:
        raise TokenRejectedError("malformed_token")
    header, claims = _b64_json(parts[0]), _b64_json(parts[1])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenRejectedError("malformed_token")
    return UnverifiedToken(header, claims)


def check_algorithm(header: Mapping[str, Any], allowed: Sequence[str]) -> str:
    """``alg`` must be one the issuer's configuration lists; ``none`` never is (RFC 8725 section 3.1)."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.strip().lower() == "none" or alg not in allowed:
        raise TokenRejectedError("algorithm_not_allowed")
    return alg


def check_crit(header: Mapping[str, Any]) -> None:
    """guard understands no JWS extensions, so any ``crit`` (RFC 7515 section 4.1.11) is refused.

    This includes ``b64`` (RFC 7797 unencoded payloads).
    """
    if "crit" in header or "b64" in header:
        raise TokenRejectedError("unsupported_critical_header")


def check_kid(header: Mapping[str, Any]) -> str | None:
    """``kid`` is only ever a dictionary key; it must still be a short printable string."""
    kid = header.get("kid")
    if kid is None:
        return None
    if not isinstance(kid, str) or len(kid) > MAX_KID_CHARS or not _KID.fullmatch(kid):
        raise TokenRejectedError("malformed_token")
    return kid


def normalize_typ(value: str) -> str:
    """RFC 7515 section 4.1.9: ``typ`` is a media type; the ``application/`` prefix may be omitted."""
    lowered = value.strip().lower()
    return lowered.removeprefix("application/")


def check_typ(header: Mapping[str, Any], required: str | None) -> None:
    """Explicit typing (RFC 8725 section 3.11, RFC 9068 ``at+jwt``) when configured."""
    if required is None:
        return
    typ = header.get("typ")
    if not isinstance(typ, str) or normalize_typ(typ) != normalize_typ(required):
        raise TokenRejectedError("invalid_type")


def verify_signature(token: str, candidates: Iterable[jwt.PyJWK],
                     alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify with each candidate key; returns the verified (header, claims).

    Each :class:`jwt.PyJWK` is bound to one algorithm, and ``algorithms=[alg]`` comes from
    configuration, so the token cannot choose how its signature is checked.
    """
    for key in candidates:
        try:
            decoded = _JWS.decode_complete(token, key=key, algorithms=[alg])
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise TokenRejectedError("malformed_token") from None
        try:
            claims = json.loads(decoded["payload"])
        except (ValueError, RecursionError):
            raise TokenRejectedError("malformed_token") from None
        if not isinstance(claims, dict):
            raise TokenRejectedError("malformed_token")
        return decoded["header"], claims
    raise TokenRejectedError("bad_signature")


def _numeric(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenRejectedError("invalid_claims")
    return float(value)


def check_issuer(claims: Mapping[str, Any], issuer: str) -> None:
    """``iss`` must equal the configured issuer exactly (no prefix/substring match)."""
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss != issuer:
        raise TokenRejectedError("invalid_issuer")


def check_expiry(claims: Mapping[str, Any], now: float, leeway: float) -> float:
    """``exp`` is required; the token is expired once ``now >= exp + leeway`` (RFC 7519 section 4.1.4)."""
    exp = _numeric(claims, "exp")
    if exp is None:
        raise TokenRejectedError("invalid_claims")
    if is_expired(exp, now, leeway):
        raise TokenRejectedError("expired")
    return exp


def is_expired(exp: float, now: float, leeway: float) -> bool:
    """The one definition of "expired" shared by the handshake and the in-session stage."""
    return now >= exp + leeway


def check_not_before(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    """``nbf`` and ``iat`` must not be in the future beyond the leeway (RFC 7519 sections 4.1.5, 4.1.6)."""
    for name in ("nbf", "iat"):
        value = _numeric(claims, name)
        if value is not None and value > now + leeway:
            raise TokenRejectedError("not_yet_valid")


def check_audience(claims: Mapping[str, Any], accepted: Sequence[str]) -> None:
    """``aud`` (string or list of strings) must contain one of guard's audiences (RFC 8707, MCP auth)."""
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TokenRejectedError("invalid_audience")
    if not accepted or not any(v in accepted for v in values):
        raise TokenRejectedError("invalid_audience")


def check_required(claims: Mapping[str, Any], required: Iterable[str]) -> None:
    """Operator-required claims must be present and not null."""
    for name in required:
        if claims.get(name) is None:
            raise TokenRejectedError("invalid_claims")

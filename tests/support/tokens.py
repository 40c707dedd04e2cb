"""Real bearer tokens for end-to-end tests that need several principals: one HS256 issuer."""

from __future__ import annotations

import time
from typing import Any

import jwt

ISSUER = "guard-test-hs256"
AUDIENCE = "https://guard.test"
SECRET = "test-only-hmac-secret-" + "x" * 32  # never a real secret: a loopback-only test issuer


def auth_config(**extra: Any) -> dict[str, Any]:
    """An ``[auth]`` table trusting :data:`ISSUER`."""
    return {"audience": AUDIENCE, "issuers": [{"issuer": ISSUER, "algorithms": ["HS256"], "hmac_secret": SECRET}],
            **extra}


def token(subject: str, roles: tuple[str, ...] = ("user",), ttl: int = 600, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "sub": subject, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + ttl,
               "roles": list(roles), **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


def bearer(subject: str, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, **kw)}"}

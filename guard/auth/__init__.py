"""Client authentication: bearer JWTs on the WebSocket handshake, RFC 9728 discovery.

::

    settings.py       [auth] config -> AuthSettings (fail closed, collect every problem)
    keys.py           public keys (PEM / JWK / JWKS) bound to algorithms before any token
    jwks.py           JWKS cache: async fetch, cooldown, bounded staleness, fail closed
    tokens.py         one validator per JWT rule (RFC 7519, RFC 8725)
    principal.py      claims -> guard.context.Principal
    discovery.py      RFC 9728 protected resource metadata
    authenticator.py  Authenticator: headers -> Principal | AuthFailure, /.well-known routes
    cli.py            dev tooling: guard keys generate, guard token mint

Token expiry during a session is enforced by :mod:`guard.pipeline.authenticate`.
"""

from guard.auth.authenticator import Authenticator, AuthFailure
from guard.auth.jwks import KeysUnavailableError
from guard.auth.settings import AuthSettings, IssuerSettings, parse_auth
from guard.auth.tokens import TokenRejectedError, is_expired

__all__ = [
    "AuthFailure",
    "AuthSettings",
    "Authenticator",
    "IssuerSettings",
    "KeysUnavailableError",
    "TokenRejectedError",
    "is_expired",
    "parse_auth",
]

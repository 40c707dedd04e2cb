"""Authenticate a WebSocket handshake: bearer JWT in, :class:`Principal` or :class:`AuthFailure` out.

guard is an OAuth 2.1 resource server (MCP ``basic/authorization``):

* the token comes only from ``Authorization: Bearer`` (RFC 6750 section 2.1); a token in
  the query string is refused (``400 invalid_request``), never read;
* refusals happen before the upgrade: 401 with ``WWW-Authenticate: Bearer
  resource_metadata="..."`` (RFC 9728 section 5.1) plus ``error="invalid_token"`` when a
  token was presented but failed (RFC 6750 section 3.1); 400 when ``Authorization`` or
  ``Origin`` appears more than once (:mod:`guard.auth.headers`); 403 for a disallowed
  ``Origin``; 503 when no key set is usable (fail closed);
* the token itself is never stored, logged or forwarded: only the principal leaves here.

Security warning: :meth:`Authenticator.authenticate` trusts nothing in the token's
header except as a lookup key; keys and algorithms come from :class:`AuthSettings`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from guard.auth import discovery, tokens
from guard.auth.headers import HeaderSource, read_headers
from guard.auth.jwks import JWKSCache, KeysUnavailableError
from guard.auth.keys import MAX_CANDIDATES, KeyLoadError, VerificationKey, hmac_key, select, static_keys
from guard.auth.principal import build_principal
from guard.auth.settings import AuthSettings, IssuerSettings, alias_problem, normalize_origin
from guard.auth.tokens import TokenRejectedError
from guard.context import ANONYMOUS, Principal
from guard.errors import ConfigError

log = logging.getLogger("guard.auth")

_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-._~+/]+=*) *", re.IGNORECASE)
_LOOPBACK_ORIGIN = re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")


@dataclass(frozen=True)
class AuthFailure:
    """A refused handshake: HTTP status, a stable reason code, response headers.

    ``reason`` never contains token contents. Codes: ``missing_token``, ``token_in_query``,
    ``token_too_large``, ``malformed_token``, ``unknown_issuer``, ``algorithm_not_allowed``,
    ``unsupported_critical_header``, ``invalid_type``, ``unknown_key``, ``bad_signature``,
    ``invalid_issuer``, ``expired``, ``not_yet_valid``, ``invalid_audience``,
    ``invalid_claims``, ``invalid_subject``, ``keys_unavailable``, ``origin_not_allowed``,
    ``duplicate_authorization``, ``duplicate_origin``.
    """

    status: int
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """What the refused client is told (HTTP body, ``error_description``): enough to act on.

        Expiry, audience, timing and transport mistakes are named; everything about the
        token's signature, issuer, key or algorithm is one uniform "invalid token", so a
        refusal teaches an attacker nothing about the key set (details go to the log).
        """
        return _DESCRIPTIONS.get(self.reason, "invalid token")


_DESCRIPTIONS = {
    "missing_token": "authentication required: send Authorization: Bearer <token>",
    "token_in_query": "the token must be sent in the Authorization header, never in the URL",
    "token_too_large": "token too large",
    "expired": "token expired",
    "not_yet_valid": "token not yet valid",
    "invalid_audience": "token was not issued for this server (audience)",
    "keys_unavailable": "cannot verify tokens right now, try again later",
    "origin_not_allowed": "origin not allowed",
}


class _Issuer:
    """The keys of one configured issuer: static (PEM/JWK/HMAC) and/or a JWKS cache."""

    def __init__(self, settings: IssuerSettings, http: Callable[[], httpx.AsyncClient],
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        keys: list[VerificationKey] = static_keys(settings.public_keys, settings.algorithms)
        if settings.hmac_secret is not None:
            keys.append(hmac_key(settings.hmac_secret, settings.algorithms))
        self._static = keys
        self.jwks = None if settings.jwks_url is None else JWKSCache(
            settings.jwks_url, settings.algorithms, http, clock=clock, cooldown=settings.jwks_cooldown,
            refresh=settings.jwks_refresh, max_stale=settings.jwks_max_stale, timeout=settings.jwks_timeout,
        )

    async def candidates(self, kid: str | None, alg: str) -> list[jwt.PyJWK]:
        found = select(self._static, kid, alg)
        if self.jwks is None:
            return found
        try:
            found += await self.jwks.lookup(kid, alg)
        except KeysUnavailableError:
            if not found:
                raise
        return found[:MAX_CANDIDATES]


class Authenticator:
    """Validates handshakes for every upstream endpoint and serves RFC 9728 metadata.

    ``clock`` (epoch seconds) and ``http`` are injectable so tests use a frozen clock
    and a real loopback JWKS server. When ``http`` is ``None`` an
    :class:`httpx.AsyncClient` is created on first use and closed by :meth:`aclose`.
    Raises :class:`~guard.errors.ConfigError` if a configured key file cannot be loaded.
    """

    def __init__(self, settings: AuthSettings, *, clock: Callable[[], float] = time.time,
                 http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._clock = clock
        self._http = http
        self._owns_http = http is None
        unnamed = alias_problem(settings.issuers)
        if unnamed is not None:  # also checked when parsing; refused here too, by construction
            raise ConfigError([f"auth.issuers: {unnamed}"])
        self._aliases = tuple(sorted(i.alias for i in settings.issuers if i.alias is not None))
        try:
            self._issuers = {i.issuer: _Issuer(i, self._client, clock) for i in settings.issuers}
        except KeyLoadError as exc:  # files changed since the config was parsed
            raise ConfigError([f"auth.issuers.public_keys: {exc}"]) from None
        for name in sorted(settings.anonymous_servers):
            log.warning("upstream %r accepts unauthenticated clients (auth.anonymous_servers): "
                        "use this for local demos only", name)
        if settings.issuers and settings.resource is None:
            log.info("auth.resource is not set: resource metadata URLs are derived from each request's Host")

    @property
    def leeway(self) -> float:
        return self.settings.leeway

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    async def authenticate(self, server: str, raw_headers: HeaderSource, *, query: str = "",
                           base_url: str | None = None) -> Principal | AuthFailure:
        """The principal for a handshake to ``/mcp/<server>``, or why it is refused.

        ``raw_headers`` are the request's headers as received (ASGI pairs or a starlette
        ``Headers``; names in any case), so that a repeated ``Authorization`` or ``Origin`` is
        seen and refused (400) before either is read. ``base_url`` (optional) is the request's
        base URL, used for ``resource_metadata`` when ``auth.resource`` is not configured.
        """
        headers, duplicate = read_headers(raw_headers)
        if duplicate == "authorization":
            return self._fail(server, self._challenge(server, headers, base_url, "duplicate_authorization",
                                                      status=400, error="invalid_request"))
        if duplicate is not None:
            return self._fail(server, AuthFailure(400, f"duplicate_{duplicate}"))
        anonymous = server in self.settings.anonymous_servers
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, anonymous):
            return self._fail(server, AuthFailure(403, "origin_not_allowed"))
        if any(k in ("access_token", "token") for k, _ in parse_qsl(query, keep_blank_values=True)):
            return self._fail(server, self._challenge(server, headers, base_url, "token_in_query",
                                                      status=400, error="invalid_request"))
        authorization = headers.get("authorization", "")
        scheme = authorization.strip().partition(" ")[0].lower()
        if scheme != "bearer" or (anonymous and not self._issuers):
            if anonymous:
                return ANONYMOUS
            return self._fail(server, self._challenge(server, headers, base_url, "missing_token", error=None))
        try:
            if len(authorization) > self.settings.max_token_bytes + 64:
                raise TokenRejectedError("token_too_large")
            match = _BEARER.fullmatch(authorization)
            if match is None:
                raise TokenRejectedError("malformed_token")
            principal = await self._verify(server, match.group(1))
        except TokenRejectedError as exc:
            return self._fail(server, self._challenge(server, headers, base_url, exc.reason))
        except KeysUnavailableError:
            return self._fail(server, AuthFailure(503, "keys_unavailable", {"Retry-After": "30"}))
        log.debug("authenticated %s on %s", principal.subject, server)
        return principal

    def _origin_allowed(self, origin: str, anonymous: bool) -> bool:
        """``auth.allowed_origins`` when set; otherwise anonymous endpoints accept only loopback
        origins (a browser page on another site must not drive an unauthenticated endpoint:
        DNS rebinding, MCP ``basic/transports`` security warning)."""
        normalized = normalize_origin(origin)
        if self.settings.allowed_origins:
            return normalized in self.settings.allowed_origins
        return not anonymous or _LOOPBACK_ORIGIN.fullmatch(normalized) is not None

    async def _verify(self, server: str, token: str) -> Principal:
        """All token checks, in RFC 8725 order; raises :class:`TokenRejectedError`."""
        s = self.settings
        unverified = tokens.parse_unverified(token, s.max_token_bytes)
        iss = unverified.claims.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise TokenRejectedError("unknown_issuer")
        tokens.check_crit(unverified.header)
        alg = tokens.check_algorithm(unverified.header, issuer.settings.algorithms)
        kid = tokens.check_kid(unverified.header)
        tokens.check_typ(unverified.header, s.typ)
        candidates = await issuer.candidates(kid, alg)
        if not candidates:
            raise TokenRejectedError("unknown_key")
        _, claims = tokens.verify_signature(token, candidates, alg)
        now = self._clock()
        tokens.check_issuer(claims, issuer.settings.issuer)
        exp = tokens.check_expiry(claims, now, s.leeway)
        tokens.check_not_before(claims, now, s.leeway)
        tokens.check_audience(claims, s.audience_for(issuer.settings, server))
        tokens.check_required(claims, s.required_claims)
        i = issuer.settings
        return build_principal(
            claims, issuer=i.issuer, kid=kid, expires_at=exp,
            subject_claim=i.subject_claim or s.subject_claim,
            roles_claim=i.roles_claim if i.roles_claim is not None else s.roles_claim,
            tenant_claim=i.tenant_claim or s.tenant_claim,
            namespace=i.alias, reserved=self._aliases,
        )

    def _challenge(self, server: str, headers: Mapping[str, str], base_url: str | None, reason: str, *,
                   status: int = 401, error: str | None = "invalid_token") -> AuthFailure:
        """A refusal carrying the RFC 9728 section 5.1 ``WWW-Authenticate`` challenge."""
        params: list[str] = []
        base = discovery.public_base(self.settings, headers, base_url)
        if base is not None:
            params.append(f'resource_metadata="{discovery.quoted(discovery.metadata_url(base, server))}"')
        if error is not None:
            params.append(f'error="{error}"')
            params.append(f'error_description="{AuthFailure(status, reason).description}"')  # RFC 6750 3
        challenge = "Bearer " + ", ".join(params) if params else "Bearer"
        return AuthFailure(status, reason, {"WWW-Authenticate": challenge})

    @staticmethod
    def _fail(server: str, failure: AuthFailure) -> AuthFailure:
        log.info("refused handshake on %s: %s (%d)", server, failure.reason, failure.status)
        return failure

    def metadata(self, server: str | None, base_url: str) -> dict[str, Any]:
        """The RFC 9728 document for ``/mcp/<server>`` (or guard as a whole when ``None``)."""
        base = discovery.public_base(self.settings, {}, base_url) or base_url.rstrip("/")
        return discovery.metadata_document(self.settings, server, base)

    def routes(self) -> list[BaseRoute]:
        """``GET /.well-known/oauth-protected-resource[/mcp/<name>]`` (public, cacheable, CORS-open)."""

        async def endpoint(request: Request) -> Response:
            name: str | None = request.path_params.get("name")
            if name is not None and self.settings.servers and name not in self.settings.servers:
                return JSONResponse({"error": "not_found"}, status_code=404)
            return JSONResponse(
                self.metadata(name, str(request.base_url)),
                headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
            )

        return [
            Route(discovery.WELL_KNOWN, endpoint, methods=["GET"]),
            Route(discovery.WELL_KNOWN + "/mcp/{name}", endpoint, methods=["GET"]),
        ]

    async def aclose(self) -> None:
        """Close the HTTP client if this authenticator created it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

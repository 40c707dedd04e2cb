"""``[auth]``: how guard authenticates MCP clients (OAuth 2.1 resource server).

guard validates bearer JWTs itself (RFC 9068 access tokens, RFC 8725 best current
practice). Everything security relevant is fixed by configuration, never by the
token: the algorithms per issuer, the keys, the audience, the leeway.

Parse rules enforced here (all problems are collected, never ``assert``):

* algorithms are explicit per issuer; ``none`` is refused in any casing;
* an issuer is either HMAC (``hmac_secret``, >= the hash size, at least 32 bytes,
  RFC 7518 section 3.2) or asymmetric (``public_keys`` and/or ``jwks_url``), never
  both: mixing them is the classic algorithm-confusion setup (CVE-2022-29217);
* ``leeway`` is at most 60 s unless ``allow_large_leeway`` is set;
* with no issuers, every upstream must be listed in ``anonymous_servers``
  (fail closed: an unauthenticated endpoint is always an explicit choice).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from guard import configtools as ct

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
})
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
"""RFC 7518 section 3.2: an HMAC key at least as long as the hash output."""
MAX_LEEWAY = 60.0
"""Largest leeway accepted without ``allow_large_leeway``."""
ABSOLUTE_MAX_LEEWAY = 600.0
"""Largest leeway accepted at all."""


@dataclass(frozen=True)
class IssuerSettings:
    """``[[auth.issuers]]``: one trusted token issuer (authorization server)."""

    issuer: str
    """Exact ``iss`` value (no prefix or substring matching)."""
    algorithms: tuple[str, ...]
    """Accepted ``alg`` values for this issuer. Required; never taken from the token."""
    alias: str | None = None
    """Namespace of this issuer's principals in the policy: its subjects are ``user:<alias>/<sub>``
    and its roles ``role:<alias>/<role>``. Optional with one issuer; with several, at most one
    issuer may go without (its names stay ``user:<sub>``, ``role:<role>``)."""
    jwks_url: str | None = None
    """JWKS endpoint (https, or http on a loopback address only)."""
    public_keys: tuple[Path, ...] = ()
    """Static public keys: PEM public key, JWK or JWKS files."""
    hmac_secret: bytes | None = field(default=None, repr=False)
    """Shared secret for HS* algorithms (use ``${ENV}``); only when explicitly configured."""
    audience: tuple[str, ...] | None = None
    """Overrides ``auth.audience`` for this issuer."""
    subject_claim: str | None = None
    """Overrides ``auth.subject_claim`` for this issuer."""
    roles_claim: tuple[str, ...] | None = None
    """Overrides ``auth.roles_claim`` for this issuer."""
    tenant_claim: str | None = None
    """Overrides ``auth.tenant_claim`` for this issuer."""
    jwks_cooldown: float = 30.0
    """Minimum seconds between two JWKS fetches (unknown ``kid`` floods cost one fetch per cooldown)."""
    jwks_refresh: float = 300.0
    """Seconds a fetched key set is used before it is refreshed."""
    jwks_max_stale: float = 3600.0
    """Seconds after the last successful fetch that the key set stays usable while the
    endpoint fails; after that guard fails closed (503)."""
    jwks_timeout: float = 5.0
    """Seconds allowed for one JWKS fetch."""

    @property
    def is_hmac(self) -> bool:
        return self.hmac_secret is not None


@dataclass(frozen=True)
class AuthSettings:
    """``[auth]``: client authentication. The default (no issuers) refuses every token."""

    issuers: tuple[IssuerSettings, ...] = ()
    """Trusted issuers (``[[auth.issuers]]``)."""
    audience: tuple[str, ...] = ()
    """Accepted ``aud`` values (a token's ``aud`` must contain one). ``{server}`` is replaced
    by the upstream name. Default: ``<resource>`` and ``<resource>/mcp/{server}``."""
    resource: str | None = None
    """guard's public base URL (e.g. ``https://guard.example.com``). The RFC 9728 resource of
    upstream NAME is ``<resource>/mcp/NAME``. Default: derived from each request."""
    authorization_servers: tuple[str, ...] = ()
    """RFC 9728 ``authorization_servers``. Default: every issuer's ``issuer``."""
    scopes_supported: tuple[str, ...] = ()
    """RFC 9728 ``scopes_supported`` (omitted when empty)."""
    leeway: float = 30.0
    """Clock skew tolerated on ``exp``/``nbf``/``iat``, seconds (<= 60 unless allow_large_leeway)."""
    allow_large_leeway: bool = False
    """Permit a leeway above 60 s (up to 600 s)."""
    max_token_bytes: int = 8192
    """Tokens longer than this are refused before any parsing."""
    allowed_origins: tuple[str, ...] = ()
    """If set, a handshake whose ``Origin`` header is not listed is refused (403). Requests
    without ``Origin`` (non-browser clients) are not affected."""
    anonymous_servers: frozenset[str] = frozenset()
    """Upstreams reachable without a token (local demos only; logged as a warning)."""
    subject_claim: str = "sub"
    """Claim (dotted path) holding the principal's subject."""
    roles_claim: tuple[str, ...] = ("roles",)
    """Claim path(s) holding roles: a list of strings or a space-separated string."""
    tenant_claim: str | None = None
    """Claim path holding the tenant, if any."""
    required_claims: tuple[str, ...] = ()
    """Claims that must be present (in addition to ``exp``, ``iss``, ``aud``)."""
    typ: str | None = None
    """Required JOSE ``typ`` header (e.g. ``at+jwt``, RFC 9068); case-insensitive,
    the ``application/`` prefix is optional."""
    servers: frozenset[str] = frozenset()
    """Upstream names (filled from the configuration, not a key): metadata is served for these."""

    def audience_for(self, issuer: IssuerSettings, server: str) -> tuple[str, ...]:
        """The ``aud`` values accepted for a token from ``issuer`` on upstream ``server``."""
        values = issuer.audience if issuer.audience is not None else self.audience
        if not values and self.resource is not None:
            values = (self.resource, self.resource + "/mcp/{server}")
        return tuple(v.replace("{server}", server) for v in values)

    def authorization_servers_or_issuers(self) -> tuple[str, ...]:
        return self.authorization_servers or tuple(i.issuer for i in self.issuers)


_AUTH_KEYS = {
    "issuers", "audience", "resource", "authorization_servers", "scopes_supported", "leeway",
    "allow_large_leeway", "max_token_bytes", "allowed_origins", "anonymous_servers", "subject_claim",
    "roles_claim", "tenant_claim", "required_claims", "typ",
}
_ISSUER_KEYS = {
    "issuer", "alias", "algorithms", "jwks_url", "public_keys", "hmac_secret", "audience", "subject_claim",
    "roles_claim", "tenant_claim", "jwks_cooldown", "jwks_refresh", "jwks_max_stale", "jwks_timeout",
}


def _str_or_list(raw: Mapping[str, Any], key: str, path: str,
                 problems: ct.Problems) -> tuple[str, ...] | None:
    if key not in raw:
        return None
    value = raw[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.add(ct.join(path, key), "must be a non-empty string or a list of them")
        return None
    return tuple(value)


ALIAS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
"""An issuer alias: no ``/`` (it ends the alias in ``user:ALIAS/sub``) and no ``:``."""


def alias_problem(issuers: Collection[IssuerSettings]) -> str | None:
    """Why these issuers' principals could be confused in the policy, or ``None``.

    Names are ``user:<alias>/<sub>``; an issuer without alias has ``user:<sub>``. Two issuers
    without alias would share one namespace: one's ``sub`` or ``admin`` role would match rules
    written for the other's.
    """
    unnamed = [i.issuer for i in issuers if i.alias is None]
    if len(unnamed) > 1:
        return ("several issuers without an alias would share one namespace in the policy (one issuer's "
                "subjects and roles would match rules written for another's): give every issuer but at most "
                "one an alias (alias = \"partner\" names its principals user:partner/SUB, role:partner/ROLE)")
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(value: str, path: str, problems: ct.Problems, *, allow_loopback_http: bool) -> None:
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and allow_loopback_http and _is_loopback(parts.hostname):
        return
    hint = " (http:// only on loopback)" if allow_loopback_http else ""
    problems.add(path, "must be an https:// URL" + hint)


def _check_algorithms(algorithms: tuple[str, ...], path: str, problems: ct.Problems) -> tuple[str, ...]:
    ok: list[str] = []
    for alg in algorithms:
        if alg.lower() == "none":
            problems.add(path, "the 'none' algorithm is never accepted")
        elif alg not in SUPPORTED_ALGORITHMS:
            known = ", ".join(sorted(SUPPORTED_ALGORITHMS))
            problems.add(path, f"unsupported algorithm {alg!r} (use one of {known})")
        else:
            ok.append(alg)
    return tuple(dict.fromkeys(ok))


def _parse_issuer(raw: Any, index: int, problems: ct.Problems, base_dir: Path) -> IssuerSettings | None:
    path = f"auth.issuers[{index}]"
    if not isinstance(raw, Mapping):
        problems.add(path, "must be a table")
        return None
    ct.unknown_keys(raw, _ISSUER_KEYS, path, problems)
    issuer = ct.get(raw, "issuer", str, "", path, problems)
    if not issuer:
        problems.add(ct.join(path, "issuer"), "is required (the exact iss value)")
    declared = _str_or_list(raw, "algorithms", path, problems)
    if declared is None:
        problems.add(ct.join(path, "algorithms"),
                     'is required (e.g. ["RS256"]); it is never taken from the token')
        declared = ()
    algorithms = _check_algorithms(declared, ct.join(path, "algorithms"), problems)
    jwks_url = ct.get(raw, "jwks_url", str, "", path, problems) or None
    if jwks_url is not None:
        jwks_url = ct.expand(jwks_url, ct.join(path, "jwks_url"), problems)
        _check_url(jwks_url, ct.join(path, "jwks_url"), problems, allow_loopback_http=True)
    key_files = ct.str_list(raw, "public_keys", (), path, problems)
    key_paths = tuple(ct.resolve_path(base_dir, p) for p in key_files)
    secret_text = ct.get(raw, "hmac_secret", str, "", path, problems)
    secret = None
    if secret_text:
        secret = ct.expand(secret_text, ct.join(path, "hmac_secret"), problems).encode("utf-8")
    _check_key_material(algorithms, jwks_url, key_paths, secret, path, problems)
    d = IssuerSettings(issuer=issuer, algorithms=algorithms)
    cooldown = ct.positive(raw, "jwks_cooldown", float, d.jwks_cooldown, path, problems)
    refresh = ct.positive(raw, "jwks_refresh", float, d.jwks_refresh, path, problems)
    max_stale = ct.positive(raw, "jwks_max_stale", float, d.jwks_max_stale, path, problems)
    if max_stale < refresh:
        problems.add(ct.join(path, "jwks_max_stale"), "must be at least jwks_refresh")
    roles = _str_or_list(raw, "roles_claim", path, problems)
    alias = ct.get(raw, "alias", str, "", path, problems) or None
    if alias is not None and not ALIAS_RE.fullmatch(alias):
        problems.add(ct.join(path, "alias"), "must be 1-32 letters, digits, '_', '-' or '.', starting with a letter "
                                             "or digit (it prefixes names in the policy: user:ALIAS/sub)")
        alias = None
    return IssuerSettings(
        issuer=issuer,
        alias=alias,
        algorithms=algorithms,
        jwks_url=jwks_url,
        public_keys=key_paths,
        hmac_secret=secret,
        audience=_str_or_list(raw, "audience", path, problems),
        subject_claim=ct.get(raw, "subject_claim", str, "", path, problems) or None,
        roles_claim=roles,
        tenant_claim=ct.get(raw, "tenant_claim", str, "", path, problems) or None,
        jwks_cooldown=cooldown,
        jwks_refresh=refresh,
        jwks_max_stale=max_stale,
        jwks_timeout=ct.positive(raw, "jwks_timeout", float, d.jwks_timeout, path, problems),
    )


def _check_key_material(algorithms: tuple[str, ...], jwks_url: str | None, key_paths: tuple[Path, ...],
                        secret: bytes | None, path: str, problems: ct.Problems) -> None:
    """One issuer is HMAC or asymmetric, never both (RFC 8725 section 2.1, CVE-2022-29217)."""
    hmac_algs = [a for a in algorithms if a in HMAC_ALGORITHMS]
    asym_algs = [a for a in algorithms if a in ASYMMETRIC_ALGORITHMS]
    asym_keys = jwks_url is not None or bool(key_paths)
    if hmac_algs and asym_algs:
        problems.add(ct.join(path, "algorithms"),
                     "mixes HMAC and asymmetric algorithms; use one family per issuer")
    if secret is not None and asym_keys:
        problems.add(path, "hmac_secret cannot be combined with public_keys or jwks_url")
    if secret is not None and asym_algs:
        problems.add(path, f"hmac_secret cannot verify {', '.join(asym_algs)}")
    if asym_keys and hmac_algs:
        problems.add(path, f"public keys cannot verify {', '.join(hmac_algs)}")
    if hmac_algs and secret is None:
        problems.add(path, "HS* algorithms need hmac_secret")
    if asym_algs and not asym_keys:
        problems.add(path, "needs public_keys and/or jwks_url")
    if not algorithms and secret is None and not asym_keys:
        problems.add(path, "needs keys: public_keys, jwks_url or hmac_secret")
    if secret is not None:
        needed = max([HMAC_MIN_BYTES[a] for a in hmac_algs] + [32])
        if len(secret) < needed:
            problems.add(ct.join(path, "hmac_secret"), f"must be at least {needed} bytes")
    for key_path in key_paths:
        _check_key_file(key_path, asym_algs, path, problems)


def _check_key_file(key_path: Path, algorithms: list[str], path: str, problems: ct.Problems) -> None:
    """Load the file now, so a bad key is a startup error, not a 401 storm."""
    from guard.auth.keys import KeyLoadError, load_key_file, static_keys  # local: keys imports settings

    try:
        load_key_file(key_path)
        if algorithms:
            static_keys([key_path], algorithms)
    except KeyLoadError as exc:
        message = str(exc)
        problems.add(ct.join(path, "public_keys"), message if message.startswith(str(key_path))
                     else f"{key_path}: {message}")


def _origins(raw: Mapping[str, Any], problems: ct.Problems) -> tuple[str, ...]:
    values = ct.str_list(raw, "allowed_origins", (), "auth", problems)
    out: list[str] = []
    for value in values:
        normalized = normalize_origin(value)
        parts = urlsplit(normalized)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
            problems.add("auth.allowed_origins", f"{value!r} is not an origin like https://app.example.com")
            continue
        out.append(normalized)
    return tuple(out)


def normalize_origin(value: str) -> str:
    """Origins compare case-insensitively on scheme and host (RFC 6454 section 4)."""
    return value.strip().rstrip("/").lower()


def parse_auth(raw: Mapping[str, Any], problems: ct.Problems, base_dir: Path,
               upstreams: Collection[str] = ()) -> AuthSettings:
    """Build :class:`AuthSettings` from the ``[auth]`` table; ``upstreams`` are the configured names."""
    path = "auth"
    ct.unknown_keys(raw, _AUTH_KEYS, path, problems)
    d = AuthSettings()
    issuers_raw = raw.get("issuers", [])
    if not isinstance(issuers_raw, list):
        problems.add("auth.issuers", "must be an array of tables ([[auth.issuers]])")
        issuers_raw = []
    issuers: list[IssuerSettings] = []
    seen: set[str] = set()
    aliases: set[str] = set()
    for index, body in enumerate(issuers_raw):
        issuer = _parse_issuer(body, index, problems, base_dir)
        if issuer is None:
            continue
        if issuer.issuer in seen:
            problems.add(f"auth.issuers[{index}].issuer", "issuer declared twice")
        if issuer.alias is not None and issuer.alias in aliases:
            problems.add(f"auth.issuers[{index}].alias", f"alias {issuer.alias!r} is used by another issuer")
        seen.add(issuer.issuer)
        aliases.add(issuer.alias or "")
        issuers.append(issuer)
    unnamed = alias_problem(issuers)
    if unnamed is not None:
        problems.add("auth.issuers", unnamed)
    leeway = ct.positive(raw, "leeway", float, d.leeway, path, problems, allow_zero=True)
    allow_large = ct.get(raw, "allow_large_leeway", bool, d.allow_large_leeway, path, problems)
    if leeway > MAX_LEEWAY and not allow_large:
        problems.add("auth.leeway",
                     f"must be at most {MAX_LEEWAY:g} s (set allow_large_leeway = true to raise it)")
        leeway = d.leeway
    elif leeway > ABSOLUTE_MAX_LEEWAY:
        problems.add("auth.leeway", f"must be at most {ABSOLUTE_MAX_LEEWAY:g} s")
        leeway = d.leeway
    max_token = ct.positive(raw, "max_token_bytes", int, d.max_token_bytes, path, problems)
    if not 512 <= max_token <= 65536:
        problems.add("auth.max_token_bytes", "must be between 512 and 65536")
        max_token = d.max_token_bytes
    resource = ct.get(raw, "resource", str, "", path, problems).rstrip("/") or None
    if resource is not None:
        _check_url(resource, "auth.resource", problems, allow_loopback_http=True)
    auth_servers = ct.str_list(raw, "authorization_servers", (), path, problems)
    for server_url in auth_servers:
        _check_url(server_url, "auth.authorization_servers", problems, allow_loopback_http=True)
    anonymous = frozenset(ct.str_list(raw, "anonymous_servers", (), path, problems))
    for name in sorted(anonymous - set(upstreams)):
        problems.add("auth.anonymous_servers", f"{name!r} is not a configured upstream")
    audience = _str_or_list(raw, "audience", path, problems) or ()
    if issuers and not audience and resource is None and any(i.audience is None for i in issuers):
        problems.add("auth.audience", "is required (or set auth.resource): tokens must be issued for guard")
    protected = sorted(set(upstreams) - anonymous)
    if not issuers and protected:
        problems.add("auth", "no issuers configured but upstream(s) " + ", ".join(protected)
                     + " require authentication; add [[auth.issuers]] or list them in"
                     " auth.anonymous_servers (demos only)")
    return AuthSettings(
        issuers=tuple(issuers),
        audience=audience,
        resource=resource,
        authorization_servers=auth_servers,
        scopes_supported=ct.str_list(raw, "scopes_supported", (), path, problems),
        leeway=leeway,
        allow_large_leeway=allow_large,
        max_token_bytes=max_token,
        allowed_origins=_origins(raw, problems),
        anonymous_servers=anonymous,
        subject_claim=ct.get(raw, "subject_claim", str, d.subject_claim, path, problems) or d.subject_claim,
        roles_claim=_str_or_list(raw, "roles_claim", path, problems) or d.roles_claim,
        tenant_claim=ct.get(raw, "tenant_claim", str, "", path, problems) or None,
        required_claims=ct.str_list(raw, "required_claims", (), path, problems),
        typ=ct.get(raw, "typ", str, "", path, problems) or None,
        servers=frozenset(upstreams),
    )

"""Map verified claims to a :class:`~guard.context.Principal`. No I/O.

Identity providers put roles in different places: ``roles`` (Azure AD, RFC 9068
section 2.2.3.1), ``groups``, Keycloak's ``realm_access.roles``, or the
space-separated OAuth ``scope``/``scp`` (RFC 8693 section 4.2). A claim path is tried
first as a literal claim name (Auth0 namespaced claims such as
``https://example.com/roles`` contain dots), then as a dotted path into nested objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from guard.auth.tokens import TokenRejectedError
from guard.context import Principal

MAX_SUBJECT_CHARS = 1024


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at ``path``: the literal claim name first, then a dotted path; ``None`` if absent."""
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def roles_from(claims: Mapping[str, Any], paths: Iterable[str]) -> tuple[str, ...]:
    """Roles from every configured path, in order, without duplicates.

    A list contributes its string items; a string is split on whitespace (``scope``).
    """
    roles: dict[str, None] = {}
    for path in paths:
        value = claim_at(claims, path)
        if isinstance(value, str):
            items: list[Any] = value.split()
        elif isinstance(value, list):
            items = value
        else:
            continue
        for item in items:
            if isinstance(item, str) and item:
                roles[item] = None
    return tuple(roles)


def subject_from(claims: Mapping[str, Any], path: str) -> str:
    """The subject: a non-empty string at ``path`` (a token without one is refused)."""
    value = claim_at(claims, path)
    if not isinstance(value, str) or not value or len(value) > MAX_SUBJECT_CHARS:
        raise TokenRejectedError("invalid_subject")
    return value


def tenant_from(claims: Mapping[str, Any], path: str | None) -> str | None:
    if path is None:
        return None
    value = claim_at(claims, path)
    return value if isinstance(value, str) and value else None


def build_principal(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    kid: str | None,
    expires_at: float,
    subject_claim: str,
    roles_claim: Iterable[str],
    tenant_claim: str | None,
    namespace: str | None = None,
    reserved: Iterable[str] = (),
) -> Principal:
    """The principal for verified ``claims``; never keeps the token itself.

    ``namespace`` is the issuer's alias. ``reserved`` are the other issuers' aliases: for an
    issuer without one, a subject that starts with ``<alias>/`` is refused and such roles are
    dropped, since ``user:<alias>/x`` and ``role:<alias>/r`` name the aliased issuer's principals.
    """
    subject = subject_from(claims, subject_claim)
    roles = roles_from(claims, roles_claim)
    prefixes = tuple(alias + "/" for alias in reserved) if namespace is None else ()
    if prefixes:
        if subject.startswith(prefixes):
            raise TokenRejectedError("invalid_subject")
        roles = tuple(role for role in roles if not role.startswith(prefixes))
    return Principal(
        subject=subject,
        roles=roles,
        issuer=issuer,
        tenant=tenant_from(claims, tenant_claim),
        expires_at=expires_at,
        key_id=kid,
        namespace=namespace,
    )

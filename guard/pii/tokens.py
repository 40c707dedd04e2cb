"""Protected-value tokens and the actions that produce them. Pure functions over a key ring.

What the model sees for each action (``E`` is the entity type, ``k1`` the key id):

* ``encrypt``  -> ``<pii:E:k1:BASE64URL>``  (AES-GCM; a new token each time)
* ``tokenize`` -> ``<pii:E:k1:BASE64URL>``  (AES-SIV; equal values, equal tokens)
* ``hash``     -> ``<pii-hash:E:k1:BASE64URL>``  (HMAC-SHA256/128; one-way)
* ``mask``     -> ``***-***-0187``  (letters/digits hidden except the last ``keep_last``)
* ``redact``   -> ``[REDACTED:E]``

Reversible tokens are self-describing (type, key id, ciphertext), contain only
``[A-Za-z0-9_:<>-]`` so a model copies them verbatim, and are bound by associated data to
the deployment id, the entity type, (optionally) the tenant and (by default) the principal
-- issuer and subject: a token minted for one deployment, tenant or principal, or relabelled
with another entity type, does not open. Hashes are keyed with the same data.

Why bind to the principal: ``tokenize`` is deterministic (AES-SIV), so within one binding the
token of a value is a fingerprint of it. Any tool that echoes its input (a search) hands the
caller the token of a value of their choice, and comparing it with a protected token confirms a
guess. Bound to the principal, tokens minted in one principal's sessions are useless to (and not
comparable with) another's. Within one principal the oracle remains: that principal can still
tell whether two of *its* tokens hide the same value (which is what makes ``tokenize`` useful to
a model) and confirm guesses against values it was shown; use ``encrypt`` where even that is
too much.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass

from guard.context import Principal
from guard.crypto.aead import (
    InvalidField,
    KeyRing,
    RandomSource,
    b64url,
    encrypt_field,
    hash_field,
    open_field,
    tokenize_field,
    unb64url,
)
from guard.pii.rules import ActionSpec

TOKEN_PREFIX = "<pii:"
TOKEN_RE = re.compile(r"<pii:([A-Z][A-Z0-9_]{0,63}):([A-Za-z0-9_.-]{1,32}):([A-Za-z0-9_-]{22,8192})>")
"""A well-formed reversible token."""
TOKEN_LIKE_RE = re.compile(r"<pii:[^<>\s]{0,8400}>")
"""Anything that claims to be a token; one that is not well formed is treated as tampered."""
DEFAULT_REDACTION = "[REDACTED:{entity}]"


@dataclass(frozen=True)
class Binding:
    """What a token is bound to: the deployment, the tenant when tenant binding is on, and the
    principal ``(issuer, subject)`` when principal binding is on (``("", "")`` for anonymous)."""

    deployment_id: str
    tenant: str | None = None
    principal: tuple[str, str] | None = None

    def associated_data(self, entity: str) -> bytes:
        return _associated_data(self.deployment_id, self.tenant, self.principal, entity)


@functools.lru_cache(maxsize=1024)
def _associated_data(deployment_id: str, tenant: str | None, principal: tuple[str, str] | None, entity: str) -> bytes:
    """Length-prefixed parts (cached: the same few bindings and entity types recur in every message)."""
    parts: tuple[str, ...] = (deployment_id, tenant or "", entity)
    if principal is not None:  # appended only when on: unbound tokens keep their old form
        parts += ("principal", *principal)
    return b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)


def binding_for(deployment_id: str, principal: Principal | None, *, bind_tenant: bool,
                bind_principal: bool) -> Binding:
    """The binding of tokens minted for and opened by ``principal`` (one place, so the PII stage
    and the authorize stage's token view can never disagree)."""
    if principal is None:
        return Binding(deployment_id)
    tenant = principal.tenant if bind_tenant else None
    who: tuple[str, str] | None = None
    if bind_principal:
        who = ("", "") if principal.anonymous else (principal.issuer or "", principal.subject)
    return Binding(deployment_id, tenant, who)


@dataclass(frozen=True)
class ParsedToken:
    entity: str
    key_id: str
    blob: bytes


def parse_token(text: str) -> ParsedToken:
    """Parse a token; raises :class:`InvalidField` if it is not well formed."""
    m = TOKEN_RE.fullmatch(text)
    if m is None:
        raise InvalidField("malformed token")
    return ParsedToken(m.group(1), m.group(2), unb64url(m.group(3)))


def open_token(ring: KeyRing, binding: Binding, text: str) -> tuple[str, str]:
    """``(entity_type, original)`` for a token; :class:`InvalidField` if tampered or foreign."""
    token = parse_token(text)
    plain = open_field(ring, token.key_id, token.blob, binding.associated_data(token.entity))
    try:
        return token.entity, plain.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidField("not text") from exc


def mask(value: str, keep_last: int = 4, mask_char: str = "*") -> str:
    """Hide letters and digits except the last ``keep_last`` of them; keep punctuation."""
    positions = [i for i, ch in enumerate(value) if ch.isalnum()]
    hidden = set(positions[: max(0, len(positions) - keep_last)]) if keep_last else set(positions)
    return "".join(mask_char if i in hidden else ch for i, ch in enumerate(value))


def apply_action(spec: ActionSpec, entity: str, value: str, ring: KeyRing | None, binding: Binding,
                 random: RandomSource = os.urandom) -> str:
    """The replacement text for ``value`` under ``spec`` (``allow``/``block`` return it unchanged).

    Raises :class:`ValueError` if a keyed action has no key ring (config validation
    prevents this).
    """
    kind = spec.kind
    if kind in ("allow", "block"):
        return value
    if kind == "mask":
        return mask(value, spec.keep_last, spec.mask_char)
    if kind == "redact":
        return (spec.replacement or DEFAULT_REDACTION).replace("{entity}", entity)
    if ring is None:
        raise ValueError(f"action {kind} needs a PII key ring")
    data = value.encode("utf-8")
    ad = binding.associated_data(entity)
    if kind == "hash":
        kid, digest = hash_field(ring, ad + b"\x00" + data)
        return f"<pii-hash:{entity}:{kid}:{b64url(digest)}>"
    if kind == "encrypt":
        kid, blob = encrypt_field(ring, data, ad, random)
    else:
        kid, blob = tokenize_field(ring, data, ad)
    return f"{TOKEN_PREFIX}{entity}:{kid}:{b64url(blob)}>"

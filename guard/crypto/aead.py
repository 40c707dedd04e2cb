"""Field-level protection primitives for PII: authenticated encryption, deterministic
encryption and keyed hashing, all over a rotating :class:`KeyRing`.

This module (with the rest of :mod:`guard.crypto`) is the only code that touches
``cryptography.hazmat``. Callers hand in bytes and associated data and get bytes back;
they never see a cipher object.

Algorithms (one 32-byte master secret per key id; per-purpose subkeys come from
HKDF-SHA256, RFC 5869, with distinct ``info`` labels so one secret never keys two
algorithms):

* ``encrypt``: AES-256-GCM (NIST SP 800-38D) with a fresh random 96-bit nonce per value.
  Equal plaintexts give different ciphertexts.
* ``tokenize``: AES-SIV (RFC 5297) with a 512-bit key and no nonce: deterministic, so equal
  plaintexts under the same key and associated data give equal ciphertexts (joinable
  pseudonyms), and still reversible and authenticated. Deterministic encryption leaks
  equality by design; use ``encrypt`` where that matters.
* ``hash``: HMAC-SHA256 (RFC 2104) truncated to 128 bits (RFC 2104 section 5 allows
  truncation to no less than half the output). One-way; never an unkeyed hash, which a
  dictionary of e-mail addresses or phone numbers would reverse in seconds.

Every ciphertext blob starts with a one-byte algorithm tag, and the tag plus the key id
are mixed into the associated data, so a blob cannot be replayed under another key id or
algorithm. Presidio's own ``encrypt`` operator (AES-CBC, unauthenticated) is never used.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guard.errors import PIIError

SECRET_BYTES = 32
"""Length of one master secret in the ring."""

KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
"""What a key id may look like (it appears inside tokens shown to models)."""

ALG_GCM = 0x01
ALG_SIV = 0x02
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HASH_BYTES = 16
_DOMAIN = b"guard-pii/v1"

RandomSource = Callable[[int], bytes]


class InvalidField(PIIError):
    """A protected value cannot be opened: unknown key id, wrong associated data, or tampered.

    Deliberately one exception for every cause (compare cryptography's single
    ``InvalidToken``) so callers cannot become an oracle for which part was wrong.
    """


@dataclass(frozen=True)
class _Subkeys:
    gcm: AESGCM
    siv: AESSIV
    mac: bytes


@dataclass(frozen=True)
class KeyRing:
    """Master secrets by key id; the primary protects new values, any key opens old ones.

    Rotation: add a new key and make it primary; values protected under older keys stay
    readable as long as their key id remains in the ring. ``repr`` never shows secrets.
    """

    primary: str
    secrets: Mapping[str, bytes] = field(repr=False)
    _cache: dict[str, _Subkeys] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("a key ring needs at least one key")
        for kid, secret in self.secrets.items():
            if not KEY_ID.match(kid):
                raise ValueError(f"key id {kid!r} must be 1-32 characters of letters, digits, '_', '-', '.'")
            if len(secret) < SECRET_BYTES:
                raise ValueError(f"key {kid!r} must be at least {SECRET_BYTES} bytes")
        if self.primary not in self.secrets:
            raise ValueError(f"primary key {self.primary!r} is not in the ring")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self.secrets)

    def _subkeys(self, kid: str) -> _Subkeys:
        cached = self._cache.get(kid)
        if cached is not None:
            return cached
        secret = self.secrets.get(kid)
        if secret is None:
            raise InvalidField("unknown key id")
        sub = _Subkeys(
            gcm=AESGCM(_derive(secret, b"aes-256-gcm", 32)),
            siv=AESSIV(_derive(secret, b"aes-siv-512", 64)),
            mac=_derive(secret, b"hmac-sha256", 32),
        )
        self._cache[kid] = sub
        return sub


def _derive(secret: bytes, label: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=_DOMAIN + b"/" + label).derive(secret)


def _aad(alg: int, kid: str, associated_data: bytes) -> bytes:
    return b"\x00".join((_DOMAIN, bytes([alg]), kid.encode("ascii"), associated_data))


def generate_secret(random: RandomSource = os.urandom) -> bytes:
    """A fresh master secret (256 bits from the OS CSPRNG unless a source is injected)."""
    return random(SECRET_BYTES)


def encrypt_field(ring: KeyRing, plaintext: bytes, associated_data: bytes,
                  random: RandomSource = os.urandom) -> tuple[str, bytes]:
    """AES-256-GCM under the ring's primary key: returns ``(key_id, blob)``.

    ``associated_data`` binds the value to its context (deployment, tenant, entity type);
    the same bytes must be supplied to :func:`open_field`. ``random`` supplies the nonce
    (inject a fixed source only in tests: a repeated GCM nonce under one key is fatal).
    """
    kid = ring.primary
    nonce = random(_NONCE_BYTES)
    sealed = ring._subkeys(kid).gcm.encrypt(nonce, plaintext, _aad(ALG_GCM, kid, associated_data))
    return kid, bytes([ALG_GCM]) + nonce + sealed


def tokenize_field(ring: KeyRing, plaintext: bytes, associated_data: bytes) -> tuple[str, bytes]:
    """Deterministic AES-SIV under the primary key: equal inputs give equal ``(key_id, blob)``."""
    kid = ring.primary
    sealed = ring._subkeys(kid).siv.encrypt(plaintext, [_aad(ALG_SIV, kid, associated_data)])
    return kid, bytes([ALG_SIV]) + sealed


def open_field(ring: KeyRing, kid: str, blob: bytes, associated_data: bytes) -> bytes:
    """Decrypt a blob from :func:`encrypt_field` or :func:`tokenize_field`.

    Raises :class:`InvalidField` for an unknown key id, a wrong ``associated_data``
    (e.g. a token minted for another deployment or tenant), or any modification.
    """
    if not blob:
        raise InvalidField("empty blob")
    alg, body = blob[0], blob[1:]
    try:
        sub = ring._subkeys(kid)
        if alg == ALG_GCM:
            if len(body) < _NONCE_BYTES + _TAG_BYTES:
                raise InvalidField("blob too short")
            return sub.gcm.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], _aad(ALG_GCM, kid, associated_data))
        if alg == ALG_SIV:
            if len(body) < _TAG_BYTES:
                raise InvalidField("blob too short")
            return sub.siv.decrypt(body, [_aad(ALG_SIV, kid, associated_data)])
    except InvalidTag as exc:
        raise InvalidField("authentication failed") from exc
    raise InvalidField("unknown algorithm")


def hash_field(ring: KeyRing, data: bytes) -> tuple[str, bytes]:
    """HMAC-SHA256 under the primary key, truncated to 128 bits: ``(key_id, digest)``.

    Keyed, so the digest cannot be reversed by hashing guesses without the key. Digests
    change when the primary key rotates.
    """
    kid = ring.primary
    mac = hmac.new(ring._subkeys(kid).mac, data, sha256).digest()
    return kid, mac[:_HASH_BYTES]


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 section 5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Inverse of :func:`b64url`; raises :class:`InvalidField` for malformed input."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        raise InvalidField("malformed base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise InvalidField("malformed base64url") from exc

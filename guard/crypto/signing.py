"""Ed25519 signatures for audit checkpoints (RFC 8032), the only signing code in guard.

The audit log signs a small canonical payload (record count, head hash, time) every
N records or T seconds; :func:`sign_checkpoint` and :func:`verify_checkpoint` are the
whole interface. Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public);
a key is named by its *key id*, the first 16 hex digits of SHA-256 over the raw
32-byte public key, so a verifier can hold a ring of old and new public keys and
pick the right one from the checkpoint.

Security: the private key never leaves this module except through
:meth:`SigningKey.private_pem` (used only to write a freshly generated key file with
mode 0600). Verification needs only public keys, which is what auditors get.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from guard.errors import GuardError

CHECKPOINT_DOMAIN = b"guard-audit-checkpoint-v1\n"
"""Domain-separation prefix: a checkpoint signature can never be replayed as any other signature."""

_SIGNATURE_TEXT = re.compile(r"^[A-Za-z0-9_-]{86}$")
"""64 signature bytes as unpadded base64url; anything else is rejected before decoding."""


class KeyFileError(GuardError, ValueError):
    """A key file is missing, unreadable or not an Ed25519 key (message is safe to show)."""


def key_id_of(public_raw: bytes) -> str:
    """The key id: first 16 hex digits of SHA-256 over the raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


class VerifyKey:
    """An Ed25519 public key with its key id."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self.key_id = key_id_of(self.raw())

    def raw(self) -> bytes:
        return self._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def public_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """An Ed25519 private key with its key id. Never logged, never serialized except to a key file."""

    __slots__ = ("_key", "key_id", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = VerifyKey(key.public_key())
        self.key_id = self.public.key_id

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def private_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted: write it only to a file with mode 0600."""
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def generate_signing_key() -> SigningKey:
    """A fresh random Ed25519 key."""
    return SigningKey(Ed25519PrivateKey.generate())


def signing_key_from_seed(seed: bytes) -> SigningKey:
    """A deterministic key from a 32-byte seed (tests use fixed keys)."""
    if len(seed) != 32:
        raise KeyFileError("an Ed25519 seed is exactly 32 bytes")
    return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))


def load_signing_key(path: str | Path) -> SigningKey:
    """Load a PKCS#8 PEM Ed25519 private key; raises :class:`KeyFileError` with a terse reason."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return SigningKey(key)


def load_verify_key(path: str | Path) -> VerifyKey:
    """Load an Ed25519 public key from a PEM file holding a public key or a private key."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        return load_signing_key(path).public
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return VerifyKey(key)


def key_ring(keys: Iterable[VerifyKey]) -> dict[str, VerifyKey]:
    """Index public keys by key id (old and new keys side by side)."""
    return {k.key_id: k for k in keys}


def sign_checkpoint(key: SigningKey, payload: bytes) -> str:
    """Sign a canonical checkpoint payload; returns the signature as unpadded base64url."""
    signature = key.sign(CHECKPOINT_DOMAIN + payload)
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii")


def verify_checkpoint(
    ring: Mapping[str, VerifyKey], key_id: str, payload: bytes, signature: str
) -> bool | None:
    """Check a checkpoint signature.

    Returns ``True`` (valid), ``False`` (invalid: tampered) or ``None`` when no key with
    ``key_id`` is in the ring (unverifiable, not evidence of tampering).
    """
    key = ring.get(key_id)
    if key is None:
        return None
    if not isinstance(signature, str) or not _SIGNATURE_TEXT.match(signature):
        return False
    raw = base64.urlsafe_b64decode(signature + "==")
    return key.verify(CHECKPOINT_DOMAIN + payload, raw)


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from exc

"""Development keys for local runs, written to a git-ignored directory (default ``dev/keys``).

One function per key kind, and :func:`generate_all` that ``guard keys generate`` calls.
Each generator leaves existing files alone unless ``overwrite`` is set, writes private
material with mode 0600 in a 0700 directory, and returns a :class:`GeneratedKey`.

Security warning: these keys are for development only. Production signing keys live
with the identity provider; guard only ever holds public keys (``auth.issuers``).

Kinds:

* ``pii``: a PII key ring (``pii-keyring.json``) for ``[pii] keyring_file``.
* ``auth``: a JWT signing key pair (ES256 or RS256) plus a JWKS file, used by
  ``guard token mint`` and configured in ``[[auth.issuers]] public_keys``.
* ``audit``: an Ed25519 key signing audit checkpoints (``[audit] signing_key``) and its
  public key for ``guard audit verify --key``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jwt.algorithms import ECAlgorithm, RSAAlgorithm

DEFAULT_DIR = Path("dev/keys")
AUTH_PRIVATE_KEY = "auth-signing-key.pem"
AUTH_PUBLIC_KEY = "auth-signing-key.pub.pem"
AUTH_JWKS = "auth-jwks.json"
DEV_ALGORITHMS = ("ES256", "RS256")
AUDIT_PRIVATE_KEY = "audit-signing-key.pem"
AUDIT_PUBLIC_KEY = "audit-signing-key.pub.pem"


@dataclass(frozen=True)
class GeneratedKey:
    """What one generator produced (or found already present)."""

    kind: str
    files: tuple[Path, ...]
    created: bool
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DevSigningKey:
    """The dev JWT signing key as ``guard token mint`` needs it."""

    private_pem: bytes = field(repr=False)
    kid: str
    algorithm: str


def ensure_dir(directory: Path) -> None:
    """Create ``directory`` (mode 0700) if needed."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def write_private(path: Path, data: bytes) -> None:
    """Write secret material readable by the owner only (mode 0600, set at creation)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url), used as the ``kid``."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
    required = {k: jwk[k] for k in members[str(jwk["kty"])]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")


def _new_key_pair(algorithm: str) -> tuple[bytes, bytes, dict[str, Any]]:
    """(private PEM, public PEM, public JWK) for a fresh ES256 or RS256 key."""
    # Key generation is the one thing pyjwt cannot do; this is the only hazmat use in auth.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(f"dev keys support {', '.join(DEV_ALGORITHMS)}, not {algorithm}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem, dict(jwk)


def generate_dev_keys(directory: Path = DEFAULT_DIR, *, algorithm: str = "ES256",
                      overwrite: bool = False) -> GeneratedKey:
    """Write the dev JWT signing key pair and a one-key JWKS to ``directory``.

    Files: ``auth-signing-key.pem`` (private, 0600), ``auth-signing-key.pub.pem`` and
    ``auth-jwks.json`` (public; ``kid`` is the RFC 7638 thumbprint).
    """
    ensure_dir(directory)
    paths = (directory / AUTH_PRIVATE_KEY, directory / AUTH_PUBLIC_KEY, directory / AUTH_JWKS)
    if paths[0].exists() and not overwrite:
        existing = load_dev_signing_key(directory)
        return GeneratedKey("auth", paths, False, {"kid": existing.kid, "alg": existing.algorithm})
    private_pem, public_pem, jwk = _new_key_pair(algorithm)
    kid = jwk_thumbprint(jwk)
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    write_private(paths[0], private_pem)
    paths[1].write_bytes(public_pem)
    paths[2].write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n", encoding="utf-8")
    return GeneratedKey("auth", paths, True, {"kid": kid, "alg": algorithm})


def load_dev_signing_key(directory: Path = DEFAULT_DIR) -> DevSigningKey:
    """The dev signing key written by :func:`generate_dev_keys` (raises ``OSError``/``ValueError``)."""
    private_pem = (directory / AUTH_PRIVATE_KEY).read_bytes()
    document = json.loads((directory / AUTH_JWKS).read_text(encoding="utf-8"))
    jwk = document["keys"][0]
    if not isinstance(jwk.get("kid"), str) or jwk.get("alg") not in DEV_ALGORITHMS:
        raise ValueError(f"{directory / AUTH_JWKS} is not a dev JWKS written by guard keys generate")
    return DevSigningKey(private_pem=private_pem, kid=jwk["kid"], algorithm=jwk["alg"])


def generate_audit_key(directory: Path = DEFAULT_DIR, *, overwrite: bool = False) -> GeneratedKey:
    """Write the Ed25519 audit checkpoint signing key (``audit.signing_key``) and its public key.

    Files: ``audit-signing-key.pem`` (private, 0600) and ``audit-signing-key.pub.pem``
    (give this one to auditors: ``guard audit verify --key``).
    """
    from guard.crypto.signing import generate_signing_key, load_signing_key

    ensure_dir(directory)
    paths = (directory / AUDIT_PRIVATE_KEY, directory / AUDIT_PUBLIC_KEY)
    if paths[0].exists() and not overwrite:
        return GeneratedKey("audit", paths, False, {"key_id": load_signing_key(paths[0]).key_id})
    key = generate_signing_key()
    write_private(paths[0], key.private_pem())
    paths[1].write_bytes(key.public.public_pem())
    return GeneratedKey("audit", paths, True, {"key_id": key.key_id})


def generate_pii_keyring(directory: Path = DEFAULT_DIR, *, overwrite: bool = False) -> GeneratedKey:
    """Write the dev PII key ring ``pii-keyring.json`` (0600) for ``[pii] keyring_file``.

    An existing ring is kept even with ``overwrite``: replacing it would make every token
    already handed to clients unreadable (use ``guard pii keys rotate`` instead).
    """
    from guard.pii.keys import DEV_KEYRING_NAME, generate_dev_keyring, load_keyring_file

    ensure_dir(directory)
    path = directory / DEV_KEYRING_NAME
    created = not path.exists()
    generate_dev_keyring(directory)
    ring = load_keyring_file(path)
    return GeneratedKey("pii", (path,), created, {"primary": ring.primary})


def generate_all(directory: Path = DEFAULT_DIR, *, overwrite: bool = False,
                 auth_algorithm: str = "ES256") -> list[GeneratedKey]:
    """Every dev key kind guard uses; what ``guard keys generate`` runs."""
    return [generate_dev_keys(directory, algorithm=auth_algorithm, overwrite=overwrite),
            generate_audit_key(directory, overwrite=overwrite),
            generate_pii_keyring(directory, overwrite=overwrite)]

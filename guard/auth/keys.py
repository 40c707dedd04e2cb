"""Verification keys: loading public keys (PEM, JWK, JWKS) and binding them to algorithms.

Every key is bound to the algorithms it may verify *before* any token is seen
(RFC 8725 section 3.1: "each key MUST be used with exactly one algorithm"; pyjwt's
:class:`jwt.PyJWK` fixes the algorithm at construction). A token's ``alg`` only
selects among the bindings the configuration allowed, so an RSA/EC public key can
never be used as an HMAC secret (CVE-2022-29217) and an ES256 key never verifies
ES384.

Private key material is refused: guard only ever needs public keys.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from guard.auth.settings import HMAC_ALGORITHMS

MAX_KEYS = 100
"""Largest number of keys accepted from one JWKS document or file."""
MAX_KEY_FILE_BYTES = 512 * 1024

_EC_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")


class KeyLoadError(ValueError):
    """A key file or JWK cannot be used (message is safe to log: never key material)."""


@dataclass(frozen=True)
class VerificationKey:
    """One public key with a :class:`jwt.PyJWK` per algorithm it may verify."""

    kid: str | None
    kty: str
    by_algorithm: Mapping[str, jwt.PyJWK]

    def for_algorithm(self, alg: str) -> jwt.PyJWK | None:
        return self.by_algorithm.get(alg)


def compatible_algorithms(jwk: Mapping[str, Any]) -> frozenset[str]:
    """The JWS algorithms a JWK can verify, from its ``kty``/``crv`` (and ``alg``, if set)."""
    kty = jwk.get("kty")
    if kty == "RSA":
        algs = _RSA_ALGORITHMS
    elif kty == "EC":
        curve_alg = _EC_CURVES.get(str(jwk.get("crv")))
        algs = frozenset({curve_alg}) if curve_alg else frozenset()
    elif kty == "OKP":
        algs = frozenset({"EdDSA"}) if jwk.get("crv") == "Ed25519" else frozenset()
    elif kty == "oct":
        algs = HMAC_ALGORITHMS
    else:
        algs = frozenset()
    declared = jwk.get("alg")
    if isinstance(declared, str):  # RFC 7517 section 4.4: the key is for that algorithm only
        algs = algs & {declared}
    return algs


def key_from_jwk(jwk: Mapping[str, Any], algorithms: Iterable[str], *,
                 allow_oct: bool = False) -> VerificationKey:
    """Bind a public JWK to the configured ``algorithms`` it is compatible with.

    Raises :class:`KeyLoadError` for private keys, ``use`` other than ``sig``, symmetric
    keys (unless ``allow_oct``), or a key that matches none of ``algorithms``.
    """
    if not isinstance(jwk, Mapping):
        raise KeyLoadError("a JWK must be a JSON object")
    kty = jwk.get("kty")
    if not isinstance(kty, str):
        raise KeyLoadError("JWK without kty")
    if kty == "oct" and not allow_oct:
        raise KeyLoadError("symmetric (oct) keys are only accepted as hmac_secret")
    if kty != "oct" and any(m in jwk for m in _PRIVATE_MEMBERS):
        raise KeyLoadError("JWK holds private key material; configure the public key only")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise KeyLoadError(f"JWK use is {use!r}, not 'sig'")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyLoadError("JWK kid must be a string")
    wanted = compatible_algorithms(jwk) & set(algorithms)
    if not wanted:
        raise KeyLoadError(f"{kty} key cannot verify any configured algorithm")
    data = dict(jwk)
    data.pop("alg", None)
    bound: dict[str, jwt.PyJWK] = {}
    for alg in sorted(wanted):
        try:
            bound[alg] = jwt.PyJWK(data, algorithm=alg)
        except jwt.PyJWTError as exc:
            raise KeyLoadError(f"unusable {kty} key: {type(exc).__name__}") from None
    return VerificationKey(kid=kid, kty=kty, by_algorithm=bound)


def hmac_key(secret: bytes, algorithms: Iterable[str]) -> VerificationKey:
    """The one key of an HMAC issuer (``kid`` is not used for selection)."""
    k = base64.urlsafe_b64encode(secret).rstrip(b"=").decode("ascii")
    hmac_algorithms = [a for a in algorithms if a in HMAC_ALGORITHMS]
    return key_from_jwk({"kty": "oct", "k": k}, hmac_algorithms, allow_oct=True)


def jwks_keys(document: Any, algorithms: Sequence[str]) -> tuple[list[VerificationKey], list[str]]:
    """Usable keys of a JWKS document and, for logging, why others were skipped."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeyLoadError("not a JWKS document (an object with a keys array)")
    raw_keys = document["keys"]
    if len(raw_keys) > MAX_KEYS:
        raise KeyLoadError(f"JWKS has more than {MAX_KEYS} keys")
    keys: list[VerificationKey] = []
    skipped: list[str] = []
    for index, item in enumerate(raw_keys):
        try:
            keys.append(key_from_jwk(item, algorithms))
        except KeyLoadError as exc:
            skipped.append(f"key {index}: {exc}")
    return keys, skipped


def _pem_to_jwk(data: bytes) -> dict[str, Any]:
    if b"PRIVATE KEY" in data:
        raise KeyLoadError("file holds a private key; configure the public key only")
    loaders: tuple[Any, ...] = (RSAAlgorithm, ECAlgorithm, OKPAlgorithm)
    for loader in loaders:
        try:
            instance = loader(loader.SHA256) if loader is not OKPAlgorithm else loader()
            key = instance.prepare_key(data)
            jwk: dict[str, Any] = loader.to_jwk(key, as_dict=True)
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        if any(m in jwk for m in _PRIVATE_MEMBERS):
            raise KeyLoadError("file holds a private key; configure the public key only")
        return jwk
    raise KeyLoadError("not a PEM public key (RSA, EC P-256/384/521 or Ed25519)")


def load_key_file(path: Path) -> list[dict[str, Any]]:
    """Public JWKs from a PEM public key, a JWK or a JWKS file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyLoadError("file is too large for a key")
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        return [_pem_to_jwk(data)]
    try:
        document = json.loads(data)
    except ValueError:
        raise KeyLoadError("neither PEM nor JSON (JWK/JWKS)") from None
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        items = document["keys"]
        if len(items) > MAX_KEYS:
            raise KeyLoadError(f"more than {MAX_KEYS} keys")
    else:
        items = [document]
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("kty"), str):
            raise KeyLoadError("JWK must be an object with kty")
        if item["kty"] == "oct":
            raise KeyLoadError("symmetric (oct) keys are only accepted as hmac_secret")
        if any(m in item for m in _PRIVATE_MEMBERS):
            raise KeyLoadError("holds private key material; configure the public key only")
        out.append(item)
    if not out:
        raise KeyLoadError("no keys")
    return out


def static_keys(paths: Iterable[Path], algorithms: Sequence[str]) -> list[VerificationKey]:
    """Keys from ``public_keys`` files, each bound to the configured algorithms it fits."""
    keys: list[VerificationKey] = []
    for path in paths:
        for jwk in load_key_file(path):
            try:
                keys.append(key_from_jwk(jwk, algorithms))
            except KeyLoadError as exc:
                raise KeyLoadError(f"{path}: {exc}") from None
    return keys


MAX_CANDIDATES = 8
"""At most this many signature checks per token (bounds the cost of a token without ``kid``)."""


def select(keys: Sequence[VerificationKey], kid: str | None, alg: str) -> list[jwt.PyJWK]:
    """Candidate keys for a token, bound to its ``alg``.

    A key with a ``kid`` is a candidate only for tokens naming that ``kid``; a key without
    one (a PEM file, an HMAC secret) is a candidate for any token; a token without ``kid``
    is tried against every key for its ``alg``, at most :data:`MAX_CANDIDATES`.
    """
    out: list[jwt.PyJWK] = []
    for key in keys:
        if kid is not None and key.kid is not None and key.kid != kid:
            continue
        bound = key.for_algorithm(alg)
        if bound is not None:
            out.append(bound)
    return out[:MAX_CANDIDATES]

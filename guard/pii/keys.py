"""PII key rings on disk and in the environment: load, generate, rotate.

A key ring is a small JSON document, kept out of the repository (a file with mode 0600,
or an environment variable holding the same JSON)::

    {"format": "guard-pii-keyring/1", "primary": "k2",
     "keys": {"k1": "<base64url 32 bytes>", "k2": "<base64url 32 bytes>"}}

Rotation adds a key and makes it primary: new values are protected with it, values
protected under ``k1`` remain readable while ``k1`` stays in the ring. Removing a key
retires it: tokens minted under it then fail closed (``PII_TOKEN_INVALID``).

Security warning: the ring holds the secrets that open every reversible token and key
every hash. Never commit it, never log it; :class:`~guard.crypto.aead.KeyRing` hides
secrets from ``repr``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from guard.crypto.aead import KEY_ID, InvalidField, KeyRing, RandomSource, b64url, generate_secret, unb64url

FORMAT = "guard-pii-keyring/1"
DEV_KEYRING_NAME = "pii-keyring.json"
"""File name of the development key ring inside the dev directory (``guard keys generate``)."""


class KeyRingError(ValueError):
    """A key ring document is missing or malformed (message safe to show: never key bytes)."""


def parse_keyring(text: str) -> KeyRing:
    """Parse the JSON key ring document; raises :class:`KeyRingError` with a terse reason."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise KeyRingError("key ring is not valid JSON") from exc
    if not isinstance(doc, dict):
        raise KeyRingError("key ring must be a JSON object")
    if doc.get("format", FORMAT) != FORMAT:
        raise KeyRingError(f"unsupported key ring format (expected {FORMAT})")
    keys = doc.get("keys")
    if not isinstance(keys, dict) or not keys:
        raise KeyRingError('key ring needs a non-empty "keys" object')
    secrets: dict[str, bytes] = {}
    for kid, value in keys.items():
        if not KEY_ID.match(kid):
            raise KeyRingError(f"key id {kid!r} must be 1-32 characters of letters, digits, '_', '-', '.'")
        if not isinstance(value, str):
            raise KeyRingError(f"key {kid!r} must be a base64url string")
        try:
            secrets[kid] = unb64url(value)
        except InvalidField as exc:
            raise KeyRingError(f"key {kid!r} is not valid base64url") from exc
    primary = doc.get("primary")
    if not isinstance(primary, str):
        raise KeyRingError('key ring needs a "primary" key id')
    try:
        return KeyRing(primary=primary, secrets=secrets)
    except ValueError as exc:
        raise KeyRingError(str(exc)) from exc


def dump_keyring(ring: KeyRing) -> str:
    """The JSON document for a ring (contains secrets: write it only to a 0600 file)."""
    doc = {
        "format": FORMAT,
        "primary": ring.primary,
        "keys": {kid: b64url(secret) for kid, secret in ring.secrets.items()},
    }
    return json.dumps(doc, indent=2) + "\n"


def load_keyring_file(path: Path) -> KeyRing:
    """Read a key ring file; raises :class:`KeyRingError` if unreadable or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyRingError(f"cannot read key ring {path}: {exc.strerror}") from exc
    return parse_keyring(text)


def load_keyring_env(name: str, environ: Mapping[str, str] | None = None) -> KeyRing:
    """Read a key ring from the environment variable ``name`` (the JSON document)."""
    env = os.environ if environ is None else environ
    if name not in env:
        raise KeyRingError(f"environment variable {name} is not set")
    return parse_keyring(env[name])


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def new_keyring(kid: str = "k1", random: RandomSource = os.urandom) -> KeyRing:
    """A fresh one-key ring (not written anywhere)."""
    return KeyRing(primary=kid, secrets={kid: generate_secret(random)})


def generate_keyring(path: Path, kid: str = "k1", random: RandomSource = os.urandom,
                     overwrite: bool = False) -> KeyRing:
    """Create a one-key ring file with mode 0600; refuses to replace an existing ring."""
    if path.exists() and not overwrite:
        raise KeyRingError(f"{path} exists; use rotate to add a key")
    ring = new_keyring(kid, random)
    _write_private(path, dump_keyring(ring))
    return ring


def _next_kid(ring: KeyRing) -> str:
    numbers = [int(m.group(1)) for kid in ring.secrets if (m := re.fullmatch(r"k(\d+)", kid))]
    return f"k{max(numbers, default=0) + 1}"


def rotate(ring: KeyRing, new_kid: str | None = None, random: RandomSource = os.urandom) -> KeyRing:
    """A ring with one more key, made primary; every old key stays for reading."""
    kid = new_kid or _next_kid(ring)
    if kid in ring.secrets:
        raise KeyRingError(f"key id {kid!r} already exists")
    secrets = dict(ring.secrets)
    secrets[kid] = generate_secret(random)
    return KeyRing(primary=kid, secrets=secrets)


def rotate_keyring(path: Path, new_kid: str | None = None, random: RandomSource = os.urandom) -> KeyRing:
    """Add a new primary key to the ring file in place (atomically, mode 0600)."""
    ring = rotate(load_keyring_file(path), new_kid, random)
    _write_private(path, dump_keyring(ring))
    return ring


def generate_dev_keyring(dev_dir: Path, random: RandomSource = os.urandom) -> Path:
    """Create ``<dev_dir>/pii-keyring.json`` if missing (for ``guard keys generate``).

    Returns the path. An existing ring is kept: regenerating would make every token
    already handed to clients unreadable.
    """
    path = dev_dir / DEV_KEYRING_NAME
    if not path.exists():
        generate_keyring(path, random=random)
    return path

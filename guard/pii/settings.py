"""``[pii]``: how guard runs PII protection (the rules themselves live in ``policies/pii.toml``).

::

    [pii]
    enabled = true                      # default: true when the section exists
    rules = "policies/pii.toml"         # relative to the config file
    deployment_id = "prod-eu-1"         # bound into every token (AEAD associated data)
    bind_tenant = false                 # also bind tokens to the principal's tenant
    bind_principal = true               # bind tokens to the principal (issuer + subject)
    keyring_file = "dev/keys/pii-keyring.json"   # or keyring_env, or [pii.keys]
    keyring_env = "GUARD_PII_KEYRING"   # env var holding the key ring JSON
    nlp_model = ""                      # "" = blank tokenizer; or an installed spaCy model (guard[ner])
    timeout = 2.0                       # seconds per message (then PII_UNAVAILABLE)
    workers = 2                         # analyzer processes (0: a thread in guard's process)
    max_pending = 0                     # optional hard cap on queued messages (0: none; admission is by deadline)
    cache_size = 65536                  # verdict-cache entries per analyzer process (0: off)
    fail_open = []                      # servers whose messages pass unscanned on analyzer failure
    primary_key = "k1"                  # with [pii.keys]: which key protects new values

    [pii.keys]                          # inline ring: values must come from ${ENV} references
    k1 = "${GUARD_PII_K1}"
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard import configtools as ct
from guard.crypto.aead import KeyRing
from guard.pii.keys import KeyRingError, load_keyring_env, load_keyring_file, parse_keyring
from guard.pii.rules import PIIRules, load_rules

_KEYS = {
    "enabled", "rules", "deployment_id", "bind_tenant", "bind_principal", "keyring_file", "keyring_env", "keys",
    "primary_key", "nlp_model", "timeout", "workers", "max_pending", "cache_size", "fail_open",
}


@dataclass(frozen=True)
class PIISettings:
    """``[pii]`` settings, with the rules file and key ring already loaded and validated."""

    enabled: bool = False
    """PII protection runs (default: on when a ``[pii]`` section exists)."""
    rules: PIIRules = field(default_factory=PIIRules)
    """The parsed rules file (``rules = "policies/pii.toml"``)."""
    rules_path: Path | None = None
    """Where the rules came from."""
    deployment_id: str = "guard"
    """Bound into every reversible token and hash: tokens from another deployment do not open."""
    bind_tenant: bool = False
    """Also bind tokens to the principal's tenant (``Principal.tenant``)."""
    bind_principal: bool = True
    """Bind tokens and hashes to the principal (issuer + subject): a token minted in one
    principal's session does not open for another, and deterministic tokens cannot be compared
    across principals (:mod:`guard.pii.tokens`). Turning it off lets tokens travel between
    users (and changes every token: tokens minted before the change stop opening)."""
    keyring: KeyRing | None = field(default=None, repr=False)
    """Key ring for hash/encrypt/tokenize (from ``keyring_file``, ``keyring_env`` or ``[pii.keys]``)."""
    nlp_model: str = ""
    """Installed spaCy model (package name or directory) adding NER (PERSON, LOCATION); ``""``:
    blank tokenizer, pattern and checksum recognizers only. Never downloaded."""
    timeout: float = 2.0
    """Seconds allowed per message before failing closed (``PII_UNAVAILABLE``)."""
    workers: int = 2
    """Processes running the analyzer (:mod:`guard.pii.pool`); ``0``: one thread in guard's process."""
    max_pending: int = 0
    """Optional hard cap on messages queued or running in the analyzer (``0``: none). Admission
    is by deadline: a message is refused only when the backlog ahead of it cannot be done
    within ``timeout`` (:mod:`guard.pii.pool`)."""
    cache_size: int = 65536
    """Verdict-cache entries per analyzer process: detections of strings seen before, keyed by a
    keyed digest, never the strings (:mod:`guard.pii.scan.cache`); ``0`` turns it off."""
    fail_open: frozenset[str] = frozenset()
    """Servers whose messages pass unprotected (audited) when analysis fails or times out."""


def _keyring(raw: Mapping[str, Any], problems: ct.Problems, base_dir: Path,
             environ: Mapping[str, str]) -> KeyRing | None:
    sources = [k for k in ("keyring_file", "keyring_env", "keys") if k in raw]
    if len(sources) > 1:
        problems.add("pii", f"choose one key ring source, not {', '.join(sources)}")
        return None
    try:
        if "keyring_file" in raw:
            value = ct.get(raw, "keyring_file", str, "", "pii", problems)
            return load_keyring_file(ct.resolve_path(base_dir, value)) if value else None
        if "keyring_env" in raw:
            value = ct.get(raw, "keyring_env", str, "", "pii", problems)
            return load_keyring_env(value, environ) if value else None
        if "keys" in raw:
            inline = ct.str_map(raw, "keys", "pii", problems)
            primary = ct.get(raw, "primary_key", str, "", "pii", problems)
            if not primary and len(inline) == 1:
                primary = next(iter(inline))
            return parse_keyring(json.dumps({"primary": primary, "keys": inline}))
    except KeyRingError as exc:
        problems.add("pii.keyring", str(exc))
    return None


def parse_pii(raw: Mapping[str, Any], problems: ct.Problems, base_dir: Path,
              upstreams: Collection[str] = (), environ: Mapping[str, str] | None = None,
              present: bool = True) -> PIISettings:
    """Build :class:`PIISettings` from the ``[pii]`` table (``present``: the section exists)."""
    path = "pii"
    env = os.environ if environ is None else environ
    ct.unknown_keys(raw, _KEYS, path, problems)
    d = PIISettings()
    enabled = ct.get(raw, "enabled", bool, present, path, problems)
    if not enabled:
        return PIISettings()
    rules_value = ct.get(raw, "rules", str, "policies/pii.toml", path, problems)
    rules_path = ct.resolve_path(base_dir, rules_value)
    rules = load_rules(rules_path, problems, label="pii.rules")
    deployment_id = ct.get(raw, "deployment_id", str, d.deployment_id, path, problems)
    if not deployment_id:
        problems.add("pii.deployment_id", "must not be empty")
    keyring = _keyring(raw, problems, base_dir, env)
    if keyring is None and rules.uses_keys() and not any(k in raw for k in ("keyring_file", "keyring_env", "keys")):
        problems.add("pii", "the rules use hash/encrypt/tokenize: configure keyring_file, keyring_env or [pii.keys]"
                     " (guard keys generate writes a dev ring)")
    fail_open = ct.str_list(raw, "fail_open", (), path, problems)
    for name in fail_open:
        if upstreams and name not in upstreams:
            problems.add("pii.fail_open", f"unknown upstream {name!r}")
    return PIISettings(
        enabled=True,
        rules=rules,
        rules_path=rules_path,
        deployment_id=deployment_id,
        bind_tenant=ct.get(raw, "bind_tenant", bool, d.bind_tenant, path, problems),
        bind_principal=ct.get(raw, "bind_principal", bool, d.bind_principal, path, problems),
        keyring=keyring,
        nlp_model=ct.get(raw, "nlp_model", str, d.nlp_model, path, problems),
        timeout=ct.positive(raw, "timeout", float, d.timeout, path, problems),
        workers=ct.positive(raw, "workers", int, d.workers, path, problems, allow_zero=True),
        max_pending=ct.positive(raw, "max_pending", int, d.max_pending, path, problems, allow_zero=True),
        cache_size=ct.positive(raw, "cache_size", int, d.cache_size, path, problems, allow_zero=True),
        fail_open=frozenset(fail_open),
    )

"""``[audit]`` configuration: where the tamper-evident log goes and how it behaves.

Parsed by :func:`parse_audit`, which collects every problem (never ``assert``). A
configuration without an ``[audit]`` section gets ``AuditSettings()`` (audit off);
once the section exists audit is on unless ``enabled = false``, and a signing key is
required: an audit log whose checkpoints nobody can verify would not be tamper-evident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from guard import configtools as ct

FsyncPolicy = Literal["off", "denials", "always"]
FailurePolicy = Literal["close", "open"]
Durability = Literal["always", "group", "off"]

_KEYS = {
    "enabled", "path", "signing_key", "checkpoint_path", "checkpoint_every", "checkpoint_interval",
    "rotate_bytes", "rotate_interval", "fsync", "queue_size", "on_failure", "retry_interval",
    "durability", "group_commit_ms", "replica",
}


@dataclass(frozen=True)
class AuditSettings:
    """``[audit]``: the tamper-evident audit log."""

    enabled: bool = False
    """Record audit events. Off when the section is absent; on by default once ``[audit]`` exists."""
    path: Path = Path("audit/guard-audit.jsonl")
    """Active JSON Lines file (relative to the config file). Rotated files sit beside it."""
    signing_key: Path | None = None
    """Ed25519 private key (PKCS#8 PEM) signing checkpoints; required when enabled.
    Generate one with ``guard audit keygen --out PATH``."""
    checkpoint_path: Path | None = None
    """Optional second location for signed checkpoints (ideally other storage), so that
    truncating the log back past a checkpoint is detectable."""
    checkpoint_every: int = 1000
    """Sign a checkpoint after this many records ..."""
    checkpoint_interval: float = 60.0
    """... or after this many seconds with uncovered records, whichever comes first."""
    rotate_bytes: int = 100 * 1024 * 1024
    """Rotate the active file once it reaches this size (0: never by size)."""
    rotate_interval: float = 86400.0
    """Rotate the active file once it is this many seconds old (0: never by time)."""
    fsync: FsyncPolicy = "denials"
    """``off``: hand records to the OS only; ``denials``: also fsync a rejection's record
    before the rejection is sent; ``always``: also fsync after every other record (in the
    background, one fsync shared by the records written meanwhile)."""
    queue_size: int = 10_000
    """Records waiting while the file thread rotates or reopens the file (producers wait when
    full), records held in memory while the sink is failing, and records kept since the last
    fsync (written again if the next one fails)."""
    on_failure: FailurePolicy = "close"
    """``close``: while the sink fails every message is rejected with -31008; ``open``:
    messages flow, records are held in memory (bounded) and counted as lost beyond that."""
    retry_interval: float = 1.0
    """Seconds between attempts to reopen a failed sink."""
    durability: Durability = "always"
    """Write-ahead of allowed client requests: a request's record is written to the log file
    (in chain order) *before* the request is forwarded upstream. ``always``: and ``fsync``ed
    before forwarding (no added wait: concurrent requests share an ``fsync``); ``group``: wait up
    to ``group_commit_ms`` to gather more requests into one ``fsync``; ``off``: handed to the OS
    (survives guard being killed, not a power loss). Measured costs: docs/compliance.md."""
    group_commit_ms: float = 2.0
    """``durability = "group"``: longest wait for a group commit, in milliseconds."""
    replica: str = ""
    """This guard's replica id, in every record (``guard.replica``) and file header, so a
    fleet's chains stay apart in a SIEM and in ``guard audit verify|report``. Empty: ``[cluster]
    replica_id`` when set, else the environment variable ``GUARD_REPLICA``, else the host name
    (the pod name on Kubernetes)."""


def parse_audit(raw: Mapping[str, Any], problems: ct.Problems, base_dir: Path,
                present: bool = True) -> AuditSettings:
    """Build :class:`AuditSettings` from the ``[audit]`` table, collecting every problem.

    ``present`` tells whether the section exists: without it audit is off by default.
    """
    from guard.crypto.signing import KeyFileError, load_signing_key

    path = "audit"
    ct.unknown_keys(raw, _KEYS, path, problems)
    d = AuditSettings()
    enabled = ct.get(raw, "enabled", bool, present, path, problems)
    log_path = ct.resolve_path(base_dir, ct.expand(ct.get(raw, "path", str, str(d.path), path, problems),
                                                   "audit.path", problems))
    key_text = ct.get(raw, "signing_key", str, "", path, problems)
    signing_key = ct.resolve_path(base_dir, ct.expand(key_text, "audit.signing_key", problems)) if key_text else None
    cp_text = ct.get(raw, "checkpoint_path", str, "", path, problems)
    checkpoint_path = (
        ct.resolve_path(base_dir, ct.expand(cp_text, "audit.checkpoint_path", problems)) if cp_text else None
    )
    if enabled:
        if signing_key is None:
            problems.add("audit.signing_key", "required when audit is enabled (guard audit keygen --out PATH)")
        else:
            try:
                load_signing_key(signing_key)
            except KeyFileError as exc:
                problems.add("audit.signing_key", str(exc))
    if checkpoint_path is not None and checkpoint_path.resolve() == log_path.resolve():
        problems.add("audit.checkpoint_path", "must differ from audit.path")
    return AuditSettings(
        enabled=enabled,
        path=log_path,
        signing_key=signing_key,
        checkpoint_path=checkpoint_path,
        checkpoint_every=ct.positive(raw, "checkpoint_every", int, d.checkpoint_every, path, problems),
        checkpoint_interval=ct.positive(raw, "checkpoint_interval", float, d.checkpoint_interval, path,
                                        problems),
        rotate_bytes=ct.positive(raw, "rotate_bytes", int, d.rotate_bytes, path, problems, allow_zero=True),
        rotate_interval=ct.positive(raw, "rotate_interval", float, d.rotate_interval, path, problems,
                                    allow_zero=True),
        fsync=cast(FsyncPolicy, ct.choice(raw, "fsync", ("off", "denials", "always"), d.fsync, path,
                                          problems)),
        queue_size=ct.positive(raw, "queue_size", int, d.queue_size, path, problems),
        on_failure=cast(FailurePolicy, ct.choice(raw, "on_failure", ("close", "open"), d.on_failure, path,
                                                 problems)),
        retry_interval=ct.positive(raw, "retry_interval", float, d.retry_interval, path, problems),
        durability=cast(Durability, ct.choice(raw, "durability", ("always", "group", "off"), d.durability, path,
                                              problems)),
        group_commit_ms=ct.positive(raw, "group_commit_ms", float, d.group_commit_ms, path, problems),
        replica=ct.get(raw, "replica", str, d.replica, path, problems),
    )


def replica_id(configured: str = "") -> str:
    """The replica id in force: ``[audit] replica``, else ``$GUARD_REPLICA``, else the host name."""
    import os
    import socket

    return (configured or os.environ.get("GUARD_REPLICA", "") or socket.gethostname())[:128]

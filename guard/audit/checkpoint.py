"""Signed checkpoints of the audit hash chain. No I/O.

A checkpoint says "the chain had ``count`` records and record ``count`` hashed to
``head`` at ``time``", signed with Ed25519 (RFC 8032) by the key ``key_id``. It is
written in-line as a record (``event.action = "audit-checkpoint"``, itself part of the
chain) and, optionally, as one line ``{"guard_checkpoint": {...}}`` in a separate
checkpoint file kept on other storage, so truncating the log back past a checkpoint
is detectable.

Signed bytes: ``b"guard-audit-checkpoint-v1\\n"`` followed by the canonical JSON (see
:mod:`guard.audit.canonical`) of ``{"v": 1, "count", "head", "time", "key_id",
"every", "interval_ms"}``. ``every``/``interval_ms`` state the writer's checkpoint
policy, so a verifier can tell "no checkpoint was due yet" from "checkpoints were
removed".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from guard.audit.canonical import canonical_unchecked
from guard.crypto.signing import SigningKey, VerifyKey, sign_checkpoint, verify_checkpoint

VERSION = 1
EXTERNAL_KEY = "guard_checkpoint"
_FIELDS = ("count", "head", "time", "key_id", "every", "interval_ms")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointFileError(OSError):
    """Writing the separate checkpoint file failed (the log bytes themselves were committed).

    Raised by :class:`guard.audit.sink.FileSink`; defined here because the sink is compiled with
    mypyc, which cannot compile a subclass of ``OSError``.
    """


def signed_payload(cp: Mapping[str, Any]) -> bytes:
    """The canonical bytes a checkpoint signature covers."""
    body = {name: cp[name] for name in _FIELDS}
    body["v"] = VERSION
    return canonical_unchecked(body)


def make_checkpoint(key: SigningKey, *, count: int, head: str, time: str, every: int,
                    interval_ms: int) -> dict[str, Any]:
    """A signed checkpoint over the first ``count`` records whose last one hashed to ``head``."""
    cp: dict[str, Any] = {
        "count": count, "head": head, "time": time, "key_id": key.key_id,
        "every": every, "interval_ms": interval_ms,
    }
    cp["signature"] = sign_checkpoint(key, signed_payload(cp))
    return cp


def well_formed(cp: Any) -> bool:
    """Structure check before any field is trusted (types, hex, no extra keys)."""
    if not isinstance(cp, Mapping) or set(cp) != {*_FIELDS, "signature"}:
        return False
    ints = ("count", "every", "interval_ms")
    if any(not isinstance(cp[n], int) or isinstance(cp[n], bool) or cp[n] < 0 for n in ints):
        return False
    return (
        isinstance(cp["head"], str) and bool(_HEX64.match(cp["head"]))
        and all(isinstance(cp[n], str) for n in ("time", "key_id", "signature"))
    )


def check(cp: Any, ring: Mapping[str, VerifyKey]) -> bool | None:
    """``True`` valid, ``False`` malformed or bad signature, ``None`` key not in the ring."""
    if not well_formed(cp):
        return False
    return verify_checkpoint(ring, cp["key_id"], signed_payload(cp), cp["signature"])


def external_line(cp: Mapping[str, Any]) -> bytes:
    """One line of the separate checkpoint file (canonical JSON plus newline)."""
    return canonical_unchecked({EXTERNAL_KEY: dict(cp)}) + b"\n"

"""Canonical form, record hashes and timestamps of the audit log. No I/O.

Canonical form of a record (what is hashed, and byte-for-byte what is written):

* JSON (RFC 8259) encoded as UTF-8, one object per line, the line ending in ``\\n``
  which is *not* part of the canonical form;
* object keys sorted by Unicode code point (equivalently by their UTF-8 bytes) at
  every level; no whitespace between tokens (``,`` and ``:`` separators);
* strings with the minimal JSON escapes (``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``
  and ``\\u00XX`` for other control characters); every other character, including
  non-ASCII, written raw as UTF-8;
* only strings, integers, booleans, ``null``, arrays and objects: records contain no
  floating-point numbers (durations are integer nanoseconds), so there is no number
  formatting ambiguity.

This equals Python's ``json.dumps(record, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` and ``orjson.dumps(record, option=OPT_SORT_KEYS)`` for such
values (a property test checks both). Nothing is excluded from the hash: a record
does not carry its own hash; record *n* carries the hash of record *n-1* in
``guard.chain.prev``. The verifier also requires each line to *be* canonical, so two
parsers cannot read different values out of one hashed line (duplicate keys,
whitespace games).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from typing import Any

import orjson

GENESIS = "0" * 64
"""``guard.chain.prev`` of the first record ever written (sequence number 1)."""


def canonical(record: Any) -> bytes:
    """The canonical bytes of a record (see module docstring). Raises ``TypeError`` on floats."""
    _reject_floats(record)
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def canonical_unchecked(record: Any) -> bytes:
    """:func:`canonical` without the float scan, for records guard built itself."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


_PLACEHOLDER = b'"chain":{"prev":"","seq":-1}'
"""``guard.chain`` of a template, as serialized (``prev`` sorts before ``seq``)."""


def template(record: dict[str, Any]) -> bytes | None:
    """The canonical bytes of ``record`` with ``guard.chain`` still to be filled in.

    Lets the event loop serialize a record as soon as it is built (a bytes object is not
    tracked by the garbage collector; a queue of record dicts is) while the writer, which
    alone knows the chain, only fills in ``seq`` and ``prev`` (:func:`chained`). Sets a
    placeholder ``guard.chain`` in ``record``. Returns ``None`` when the placeholder's bytes
    do not occur exactly once (a key named ``chain`` elsewhere with the same value: the
    caller then queues the dict itself). Raises ``TypeError`` if the record cannot be
    serialized.

    Inside a JSON string every ``"`` is escaped, so the placeholder's bytes can only be an
    object member; occurring once, it is ``guard.chain``.
    """
    record.setdefault("guard", {})["chain"] = {"prev": "", "seq": -1}
    line = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    return line if line.count(_PLACEHOLDER) == 1 else None


def chained(template_bytes: bytes, seq: int, prev: str) -> bytes:
    """A :func:`template` with ``guard.chain`` set: the record's canonical bytes.

    Equal to :func:`canonical_unchecked` of the record with ``guard.chain`` =
    ``{"seq": seq, "prev": prev}`` (``prev`` is lowercase hex, which needs no escaping).
    """
    chain = b'"chain":{"prev":"%s","seq":%d}' % (prev.encode("ascii"), seq)
    return template_bytes.replace(_PLACEHOLDER, chain, 1)


def digest(canonical_bytes: bytes) -> str:
    """SHA-256 of canonical bytes, lowercase hex (the chain hash)."""
    return hashlib.sha256(canonical_bytes).hexdigest()


def rfc3339(epoch: float) -> str:
    """UTC time as RFC 3339 with microseconds and ``Z``: ``2025-01-02T03:04:05.123456Z``."""
    micros = round(epoch * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_second(seconds)}.{fraction:06d}Z"


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    """The ``YYYY-MM-DDTHH:MM:SS`` part (cached: records arrive many per second)."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_rfc3339(text: str) -> float:
    """Epoch seconds from an RFC 3339 / ISO 8601 time (a date alone means midnight UTC).

    Raises ``ValueError`` for anything else. A time without offset is taken as UTC.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _reject_floats(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("audit records carry no floating-point numbers")
    if isinstance(value, dict):
        for item in value.values():
            _reject_floats(item)
    elif isinstance(value, list):
        for item in value:
            _reject_floats(item)

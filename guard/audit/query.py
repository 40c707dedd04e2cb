"""``guard audit query``: filter audit records and print them as a table or JSON Lines.

Reads records in chain order without verifying them (run ``guard audit verify`` for
that). Filters combine with AND; ``--subject``, ``--server`` and ``--tool`` accept shell
wildcards (``fnmatch``); times are RFC 3339 (``2025-01-02T03:04:05Z``), a date
(``2025-01-02``, midnight UTC) or a relative age (``30s``, ``15m``, ``2h``, ``7d``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from guard.audit import reader, schema
from guard.audit.canonical import parse_rfc3339

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: float) -> float:
    """Epoch seconds from RFC 3339, a date, or a relative age before ``now``; ``ValueError`` otherwise."""
    match = _RELATIVE.match(text.strip())
    if match:
        return now - int(match.group(1)) * _UNITS[match.group(2)]
    return parse_rfc3339(text)


@dataclass(frozen=True)
class Filters:
    since: float | None = None
    until: float | None = None
    subject: str | None = None
    server: str | None = None
    tool: str | None = None
    decision: Literal["allow", "deny"] | None = None
    entity_type: str | None = None
    include_internal: bool = False
    """Also show the writer's own records (file headers, checkpoints)."""


def get(record: dict[str, Any], dotted: str) -> Any:
    """``record["a"]["b"]`` for ``"a.b"`` (``None`` when any step is missing)."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def timestamp(record: dict[str, Any]) -> float | None:
    stamp = record.get("@timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        return parse_rfc3339(stamp)
    except ValueError:
        return None


def is_internal(record: dict[str, Any]) -> bool:
    return get(record, "event.action") in schema.INTERNAL_ACTIONS


def is_denied(record: dict[str, Any]) -> bool:
    types = get(record, "event.type")
    return isinstance(types, list) and "denied" in types


def is_allowed(record: dict[str, Any]) -> bool:
    types = get(record, "event.type")
    return isinstance(types, list) and "allowed" in types


def _glob(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and fnmatch.fnmatchcase(value, pattern)


def matches(record: dict[str, Any], f: Filters) -> bool:
    """True when ``record`` passes every filter in ``f``."""
    if not f.include_internal and is_internal(record):
        return False
    if f.since is not None or f.until is not None:
        when = timestamp(record)
        if when is None or (f.since is not None and when < f.since) or (f.until is not None and when >= f.until):
            return False
    if f.subject is not None and not _glob(get(record, "user.name"), f.subject):
        return False
    if f.server is not None and not _glob(get(record, "service.target.name"), f.server):
        return False
    if f.tool is not None and not _glob(get(record, "guard.target.name"), f.tool):
        return False
    if f.decision == "deny" and not is_denied(record):
        return False
    if f.decision == "allow" and not is_allowed(record):
        return False
    if f.entity_type is not None:
        types = get(record, "guard.pii.entity_types")
        if not isinstance(types, list) or f.entity_type not in types:
            return False
    return True


def select(paths: Iterable[str | Path], filters: Filters) -> Iterator[dict[str, Any]]:
    """The records of ``paths`` (chain order) that pass ``filters``."""
    for record in reader.records(paths):
        if matches(record, filters):
            yield record


_COLUMNS = ("TIME", "OUTCOME", "ACTION", "SUBJECT", "SERVER", "TARGET", "REASON", "PII")
_WIDTHS = (27, 7, 20, 16, 14, 28, 24, 30)


def row(record: dict[str, Any]) -> tuple[str, ...]:
    """The table columns of one record."""
    pii = get(record, "guard.pii.entity_types")
    reason = get(record, "event.reason") or get(record, "guard.upstream.outcome") or ""
    return (
        str(record.get("@timestamp", "")),
        str(get(record, "event.outcome") or ""),
        str(get(record, "event.action") or ""),
        str(get(record, "user.name") or ""),
        str(get(record, "service.target.name") or ""),
        str(get(record, "guard.target.name") or ""),
        str(reason),
        ",".join(str(p) for p in pii) if isinstance(pii, list) else "",
    )


def _cell(value: str, width: int) -> str:
    value = value.replace("\n", " ").replace("\t", " ")
    return value if len(value) <= width else value[: width - 1] + "…"


def format_table(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Lines of a fixed-width table (header first)."""
    yield "  ".join(c.ljust(w) for c, w in zip(_COLUMNS, _WIDTHS, strict=True)).rstrip()
    for record in records:
        yield "  ".join(_cell(v, w).ljust(w) for v, w in zip(row(record), _WIDTHS, strict=True)).rstrip()


CSV_COLUMNS = ("time", "outcome", "action", "subject", "server", "method", "target", "decision", "stage",
               "reason", "pii", "session", "replica", "event_id", "seq")


def csv_row(record: dict[str, Any]) -> tuple[str, ...]:
    """The CSV columns of one record (``CSV_COLUMNS``)."""
    allowed = get(record, "guard.decision.allowed")
    decision = "deny" if allowed is False or is_denied(record) else ("allow" if allowed is True else "")
    pii = get(record, "guard.pii.entity_types")
    seq = get(record, "guard.chain.seq")
    values = (
        record.get("@timestamp"), get(record, "event.outcome"), get(record, "event.action"), get(record, "user.name"),
        get(record, "service.target.name"), get(record, "guard.rpc.method"), get(record, "guard.target.name"),
        decision, get(record, "guard.decision.stage") or get(record, "guard.verdict.stage"),
        get(record, "guard.decision.reason") or get(record, "event.reason") or get(record, "guard.upstream.outcome"),
        ";".join(str(p) for p in pii) if isinstance(pii, list) else "", get(record, "guard.session.id"),
        get(record, "guard.replica"), get(record, "event.id"), seq,
    )
    return tuple(_csv_safe("" if v is None else str(v)) for v in values)


def _csv_safe(value: str) -> str:
    """Neutralize spreadsheet formulas (CSV injection: a target name like ``=HYPERLINK(...)``)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def format_csv(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """RFC 4180 lines, header first (without the line terminator)."""
    import csv
    import io
    import itertools

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")
    for row_values in itertools.chain((CSV_COLUMNS,), (csv_row(r) for r in records)):
        writer.writerow(row_values)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def format_json(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The matching records as JSON Lines (as stored, keys sorted)."""
    for record in records:
        yield orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode("utf-8")

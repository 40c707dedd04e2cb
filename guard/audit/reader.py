"""Reading audit files: expand paths, stream lines, order files along the chain. Read-only.

Shared by ``verify``, ``query`` and ``report``. Files are given in any order, as
paths, directories (every ``*.jsonl`` inside, subdirectories included) or glob patterns; log files are put in
chain order by the sequence number of their first record, and checkpoint files
(lines ``{"guard_checkpoint": ...}``) are told apart by content, not by name.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from guard.audit.checkpoint import EXTERNAL_KEY


@dataclass
class FileSet:
    """The files a set of path arguments named."""

    logs: list[Path] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    empty: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def expand(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """The files ``paths`` name (directories: their ``*.jsonl``; globs), and the names that matched nothing."""
    found: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        text = str(raw)
        path = Path(text)
        if path.is_dir():
            found.extend(_logs_under(path))
        elif any(ch in text for ch in "*?[") and not path.exists():
            matches = sorted(Path(m) for m in glob.glob(text))
            hits = [m for m in matches if m.is_file()] + [f for m in matches if m.is_dir() for f in _logs_under(m)]
            if hits:
                found.extend(hits)
            else:
                missing.append(text)
        elif path.is_file():
            found.append(path)
        else:
            missing.append(text)
    unique: dict[Path, Path] = {}
    for p in found:
        if p.name.endswith(".lock"):
            continue  # a writer's lock file (guard.audit.lock), not a log
        unique.setdefault(p.resolve(), p)
    return list(unique.values()), missing


def _logs_under(directory: Path) -> list[Path]:
    """Every ``*.jsonl`` in ``directory`` and below (a fleet: one directory per replica)."""
    return sorted(p for p in directory.rglob("*.jsonl") if p.is_file())


def first_record(path: Path) -> Any:
    """The first complete line of a file, parsed (``None`` if there is none or it is not JSON)."""
    try:
        with path.open("rb") as fh:
            line = fh.readline()
    except OSError:
        return None
    if not line.endswith(b"\n"):
        return None
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def first_seq(path: Path) -> int | None:
    obj = first_record(path)
    try:
        seq = obj["guard"]["chain"]["seq"]
    except (KeyError, TypeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def collect(paths: Iterable[str | Path]) -> FileSet:
    """Expand ``paths`` and sort the files into logs (chain order), checkpoint files and empties."""
    files, missing = expand(paths)
    out = FileSet(missing=missing)
    keyed: list[tuple[int, int, str, Path]] = []
    for p in files:
        try:
            size = p.stat().st_size
        except OSError:
            out.missing.append(str(p))
            continue
        if size == 0:
            out.empty.append(p)
            continue
        obj = first_record(p)
        if isinstance(obj, dict) and EXTERNAL_KEY in obj:
            out.checkpoints.append(p)
            continue
        seq = first_seq(p)
        keyed.append((0 if seq is not None else 1, seq or 0, p.name, p))
    out.logs = [p for *_, p in sorted(keyed)]
    return out


def lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """``(line number, bytes without newline, complete)``; only the last line can be incomplete."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if raw.endswith(b"\n"):
                yield number, raw[:-1], True
            else:
                yield number, raw, False


def records(paths: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Every parseable record of the log files named by ``paths``, in chain order (no verification)."""
    for path in collect(paths).logs:
        for _, raw, complete in lines(path):
            if not complete:
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                yield obj

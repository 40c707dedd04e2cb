"""A fleet's audit files, sorted into chains: one per replica, per worker, per log path. Read-only.

Every guard process writes its own hash chain (:mod:`guard.audit.lock`): ``--workers N``
gives ``<stem>.worker-<i><suffix>`` per worker, and each replica of a fleet writes its own
files (its own volume or directory; records and headers carry ``guard.replica``). Rotated
files of a chain are named ``<stem>-<first seq>-<UTC stamp><suffix>`` beside the active one.
So the chain a log file belongs to is its directory plus its name without the rotation
suffix; verifying several chains as one would report forks that are not there.

External checkpoint files (``audit.checkpoint_path``) are told apart by content. With one
chain they all belong to it; with several, a checkpoint file goes to the chain whose worker
suffix it shares (``checkpoints.worker-1.jsonl`` -> ``guard-audit.worker-1``), or to the
only chain in its own directory; one that matches no chain is reported, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from guard.audit import reader
from guard.audit.checkpoint import EXTERNAL_KEY

_ROTATED = re.compile(r"^(?P<base>.+)-\d{12,}-\d{8}T\d{6}Z(?:-\d+)?$")
_WORKER = re.compile(r"\.worker-(\d+)$")


@dataclass
class Chain:
    """The files of one hash chain (logs in any order; the verifier orders them)."""

    key: tuple[str, str]
    logs: list[Path] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.key[1]

    @property
    def replica(self) -> str | None:
        """The replica id its newest header names, if any."""
        for path in sorted(self.logs, key=lambda p: reader.first_seq(p) or 0, reverse=True):
            first = reader.first_record(path)
            audit = first.get("guard", {}).get("audit") if isinstance(first, dict) else None
            replica = audit.get("replica") if isinstance(audit, dict) else None
            if isinstance(replica, str):
                return replica
        return None

    @property
    def label(self) -> str:
        """How reports name the chain: replica id (when recorded) and the log's base name."""
        replica = self.replica
        name = f"{Path(self.key[0]).name}/{self.base}" if self.key[0] else self.base
        return f"{replica}: {name}" if replica else name


@dataclass
class Fleet:
    chains: list[Chain]
    missing: list[str]
    empty: list[Path]
    unmatched_checkpoints: list[Path]


def chain_key(path: Path) -> tuple[str, str]:
    """(directory, base name) of the chain a log file belongs to."""
    stem = path.stem
    match = _ROTATED.match(stem)
    return str(path.resolve().parent), match.group("base") if match else stem


def _worker(name: str) -> str | None:
    match = _WORKER.search(name)
    return match.group(1) if match else None


def group(paths: Iterable[str | Path]) -> Fleet:
    """Sort the files ``paths`` name into chains (see the module docstring)."""
    files, missing = reader.expand(paths)
    chains: dict[tuple[str, str], Chain] = {}
    checkpoints: list[Path] = []
    empty: list[Path] = []
    for path in files:
        try:
            size = path.stat().st_size
        except OSError:
            missing.append(str(path))
            continue
        if size == 0:
            empty.append(path)
            continue
        first = reader.first_record(path)
        if isinstance(first, dict) and EXTERNAL_KEY in first:
            checkpoints.append(path)
            continue
        key = chain_key(path)
        chains.setdefault(key, Chain(key)).logs.append(path)
    ordered = sorted(chains.values(), key=lambda c: c.key)
    unmatched: list[Path] = []
    for cp in checkpoints:
        target = _match(cp, ordered)
        if target is None:
            unmatched.append(cp)
        else:
            target.checkpoints.append(cp)
    return Fleet(ordered, missing, empty, unmatched)


def _match(checkpoint: Path, chains: list[Chain]) -> Chain | None:
    if len(chains) == 1:
        return chains[0]
    worker = _worker(checkpoint.stem)
    if worker is not None:
        same = [c for c in chains if _worker(c.base) == worker]
        if len(same) == 1:
            return same[0]
    here = [c for c in chains if c.key[0] == str(checkpoint.resolve().parent)]
    return here[0] if len(here) == 1 else None

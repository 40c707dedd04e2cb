"""The labelled PII corpus (``corpus.jsonl``) and its scoring, shared by tests and ``bench/pii_bench.py``.

Each line is one realistic MCP message with the PII values placed in it and their JSON paths
as labels (set when the corpus was written, never by the analyzer). A finding counts as a true
positive when a label has the same path and entity type (multiset: two phones in one string are
two labels).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.jsonrpc import Kind
from guard.pii.protect import Protector

CORPUS = Path(__file__).with_name("corpus.jsonl")
KINDS = {"request": Kind.REQUEST, "result": Kind.RESULT, "error": Kind.ERROR, "notification": Kind.NOTIFICATION}


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class Score:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    misses: list[tuple[str, str, str]] = field(default_factory=list)
    false_alarms: list[tuple[str, str, str]] = field(default_factory=list)

    def recall(self, entity: str) -> float:
        found = self.tp[entity] + self.fn[entity]
        return self.tp[entity] / found if found else 1.0

    def precision(self, entity: str) -> float:
        flagged = self.tp[entity] + self.fp[entity]
        return self.tp[entity] / flagged if flagged else 1.0

    @property
    def entities(self) -> list[str]:
        return sorted(set(self.tp) | set(self.fp) | set(self.fn))


def detections(protector: Protector, record: dict[str, Any]) -> list[tuple[str, str]]:
    """``(path, entity)`` for every finding guard would act on (or allow) in a record."""
    scan = protector.scan(record["message"], KINDS[record["kind"]], record["method"],
                          record["direction"] == "to_client", "demo", record["tool"])
    return [(leaf.path, span.entity) for leaf in scan.leaves.values() for span in leaf.spans]


def evaluate(protector: Protector, records: list[dict[str, Any]] | None = None) -> Score:
    score = Score()
    for record in records if records is not None else load_corpus():
        expected = Counter((label["path"], label["entity"]) for label in record["labels"])
        found = Counter(detections(protector, record))
        for path, entity in expected | found:
            hit = min(expected[(path, entity)], found[(path, entity)])
            score.tp[entity] += hit
            if expected[(path, entity)] > hit:
                score.fn[entity] += expected[(path, entity)] - hit
                score.misses.append((record["name"], path, entity))
            if found[(path, entity)] > hit:
                score.fp[entity] += found[(path, entity)] - hit
                score.false_alarms.append((record["name"], path, entity))
    return score

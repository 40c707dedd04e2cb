"""The labelled corpus: reproducible and covering every shape issue 13 lists.

Scores: ``bench/pii_bench.py --accuracy``.
"""

from __future__ import annotations

from guard.pii.protect import Protector
from tests.pii.corpus import CORPUS, NAMES, TARGETS, evaluate, guard_protect, load_corpus, targets_hold
from tests.pii.corpus_gen import EVASIONS, dump, generate

PLACES = {"initialize instructions", "server/discover instructions", "tools/list", "resources/list",
          "resources/templates/list", "prompts/list", "_meta", "unknown keys", "JSON object keys", "JSON numbers",
          "base64 in strings", "notifications/cancelled reason", "embedded JSON with a duplicate key",
          "adjacent text blocks", "lowercase IBAN", "client notifications"}
SHAPES = {"json-record", "csv", "tsv", "markdown", "log", "email-headers", "prose", "nested-json", "escaped-json"}


def test_committed_corpus_is_what_the_generator_writes() -> None:
    assert CORPUS.read_text(encoding="utf-8") == dump(generate()), "run python -m tests.pii.corpus_gen"


def test_corpus_covers_every_shape_form_and_place() -> None:
    records = load_corpus()
    assert {r["shape"] for r in records} >= SHAPES
    assert {r["form"] for r in records} >= set(EVASIONS) | {"plain", "base64"}
    assert {r.get("place") for r in records} >= PLACES
    assert sum(r["pii_free"] for r in records) >= 25
    assert sum(len(r["labels"]) for r in records) >= 1000


def test_shipped_rules_hit_the_issue_13_targets_on_the_corpus(protector: Protector) -> None:
    """Every shipped entity type on: leaks <= 0.5% (names excluded), none on structural places,
    evasion forms <= 10%, PII-free documents altered <= 10%, output valid JSON of the same shape."""
    score = evaluate(guard_protect(protector), load_corpus(), counts=protector.rules)
    assert sum(n for e, n in score.labels.items() if e not in NAMES) >= 1000
    assert score.leak_rate() <= TARGETS["leak"], [m for m in score.misses if m[1] not in NAMES]
    assert sum(score.place_leaks.values()) == 0, score.place_leaks
    assert score.evasion_leak_rate() <= TARGETS["evasion"], score.form_leaks
    assert score.altered_rate <= TARGETS["altered"], score.altered
    assert not score.bad_shape, score.bad_shape
    assert targets_hold(score)

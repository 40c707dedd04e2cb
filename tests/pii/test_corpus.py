"""The labelled corpus: reproducible and covering every shape issue 13 lists.

Scores: ``bench/pii_bench.py --accuracy``.
"""

from __future__ import annotations

from tests.pii.corpus import CORPUS, load_corpus
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
    assert sum(len(r["labels"]) for r in records if True) >= 1000

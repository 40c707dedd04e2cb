"""guard's findings are a superset of stock Presidio's (``guard/pii/stock.py``: the default
registry, the stock ``PhoneRecognizer`` and ``phonenumbers``, never guard's recognizer
instances), on the corpus, on every benchmark payload and on generated JSON leaves."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import payloads
from guard.jsonrpc import Kind
from guard.pii.analysis import Detection, analyze_items
from guard.pii.engine import Analyzer
from guard.pii.protect import Protector
from guard.pii.rules import PIIRules
from guard.pii.stock import StockPresidio, missing
from tests.pii.corpus import load_corpus
from tests.pii.test_properties import json_values, text_strategy


@pytest.fixture(scope="module")
def stock(rules: PIIRules) -> StockPresidio:
    return StockPresidio(rules.detected_entities(), rules.recognizers, rules.context)


@pytest.fixture(scope="module")
def stock_all() -> StockPresidio:
    return StockPresidio(None)


def assert_superset(analyzer: Analyzer, stock: StockPresidio, items: list[tuple[str, tuple[str, ...]]]) -> int:
    found = analyze_items(analyzer, items)
    compared = 0
    for (text, words), guard in zip(items, found, strict=True):
        reference = stock.detections(text, words)
        assert missing(guard, reference) == [], (text, words, reference, guard)
        # Identical, not only a superset, on the entities stock Presidio runs (guard adds ABA
        # routing numbers, which Presidio ships but leaves out of its default registry).
        assert sorted(d for d in guard if d.entity_type in stock.entities) == sorted(reference), (text, words)
        compared += len(reference)
    return compared


def test_guard_finds_what_stock_presidio_finds_on_the_corpus(
        analyzer: Analyzer, stock: StockPresidio, protector: Protector) -> None:
    items = []
    for record in load_corpus():
        message = record["message"]
        kind = Kind.REQUEST if "method" in message else Kind.RESULT
        method = message.get("method", "tools/call")
        items += protector.collect(message, kind, method, kind is Kind.RESULT, "demo", "t").items
    assert len(items) > 100
    assert assert_superset(analyzer, stock, items) > 20


@pytest.mark.parametrize("size", [1024, 4096, 16384])
@pytest.mark.parametrize("pii", [False, True])
def test_guard_finds_what_stock_presidio_finds_on_the_benchmark_payloads(
        analyzer: Analyzer, stock: StockPresidio, protector: Protector, size: int, pii: bool) -> None:
    for variant, tag in ((0, None), (1, payloads.unique_tag(12345))):
        payload = {"jsonrpc": "2.0", "id": 1, "result": payloads.result(size, pii, variant, tag)}
        items = protector.collect(payload, Kind.RESULT, "tools/call", True, "demo", "t").items
        assert_superset(analyzer, stock, items)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_strategy, st.sampled_from([(), ("phone",), ("card", "number"), ("email",)]))
def test_every_predefined_recognizer_finds_what_stock_presidio_finds(
        full_analyzer: Analyzer, stock_all: StockPresidio, text: str, ctx: tuple[str, ...]) -> None:
    assert_superset(full_analyzer, stock_all, [(text, ctx)])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(json_values)
def test_generated_json_leaves_find_what_stock_presidio_finds(
        analyzer: Analyzer, stock: StockPresidio, protector: Protector, doc: Any) -> None:
    payload = {"jsonrpc": "2.0", "id": 1, "result": {
        "content": [{"type": "text", "text": json.dumps(doc)}], "structuredContent": {"data": doc}}}
    items = protector.collect(payload, Kind.RESULT, "tools/call", True, "demo", "t").items
    assert_superset(analyzer, stock, items)


def test_missing_is_a_superset_check() -> None:
    stock = [Detection("PHONE_NUMBER", 0, 12, 0.75)]
    assert missing([Detection("PHONE_NUMBER", 0, 12, 0.75)], stock) == []
    assert missing([Detection("PHONE_NUMBER", 0, 12, 1.0), Detection("URL", 1, 3, 0.5)], stock) == []
    assert missing([Detection("PHONE_NUMBER", 0, 12, 0.4)], stock) == stock  # lower score
    assert missing([Detection("PHONE_NUMBER", 0, 11, 0.75)], stock) == stock  # other span
    assert missing([], stock) == stock


def _context_vocabulary() -> list[str]:
    """Every context word of every predefined recognizer (stock configuration), some in upper
    case, inside longer words and with a non-ASCII twist: what the context decision reads."""
    words: set[str] = set()
    for rec in Analyzer().recognizers:
        words.update(rec.context or ())
    base = sorted(words)
    return base + [w.upper() for w in base[::3]] + [f"x{w}s" for w in base[1::4]] + ["Kard", "\u212aey"]


_CONTEXT_WORDS = _context_vocabulary()
_VALUES = ["+1 (212) 555-0187", "4111-1111-1111-1111", "078-05-1120", "alice@example.com", "2024-01-31",
           "GB82 WEST 1234 5698 7654 32", "10.0.0.1", "https://example.com", "ORD-2024-000981", "  ", "\n"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_CONTEXT_WORDS), st.sampled_from(_VALUES),
                          st.sampled_from(["a", "the", "of", ":", "-", "\u0130", "\u03a3"])), max_size=14)
       .map(" ".join),
       st.lists(st.sampled_from([*_CONTEXT_WORDS, "order", "id", "notes"]), max_size=3).map(tuple))
def test_context_words_in_text_or_key_score_like_stock_presidio(
        full_analyzer: Analyzer, stock_all: StockPresidio, text: str, ctx: tuple[str, ...]) -> None:
    """The context decision (key words decide without tokenizing, text words go to Presidio's
    enhancer) against stock Presidio: identical detections and scores."""
    assert_superset(full_analyzer, stock_all, [(text, ctx)])

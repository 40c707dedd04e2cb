"""guard's pattern loop (``guard/pii/scan/patterns.py``) against Presidio's own
``PatternRecognizer.analyze`` on the recognizers of a stock registry (the oracle is stock
Presidio's code and instances, never guard's)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import IbanRecognizer

from guard.pii.rules import PIIRules
from guard.pii.scan.patterns import analyze_patterns, explain, remove_duplicates, supports
from guard.pii.stock import StockPresidio
from tests.pii.test_properties import text_strategy

_PII = ["+1 (212) 555-0187", "4111-1111-1111-1111", "4111 1111 1111 1112", "078-05-1120", "000-00-0000",
        "alice@example.com", "bob@x.invalidtld", "2024-01-31", "31/01/2024", "10.0.0.1", "fe80::1",
        "00:1a:2b:3c:4d:5e", "123e4567-e89b-12d3-a456-426614174000", "https://example.com", "EMP-004211",
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "011000015", "943 476 5919", "AB123456C"]


@pytest.fixture(scope="module")
def stock(rules: PIIRules) -> StockPresidio:
    return StockPresidio(None, rules.recognizers, rules.context)


def _key(result: Any) -> tuple[Any, ...]:
    return (result.entity_type, result.start, result.end, result.score, result.recognition_metadata)


def test_guard_pattern_loop_applies_to_presidio_s_own_loop_only(stock: StockPresidio) -> None:
    recognizers = stock.engine.registry.recognizers
    assert sum(supports(r) for r in recognizers) >= 12
    assert not any(supports(r) for r in recognizers if isinstance(r, IbanRecognizer))  # its own analyze

    class Overriding(PatternRecognizer):
        def analyze(self, *args: Any, **kwargs: Any) -> Any:
            return []

    assert not supports(Overriding("X", patterns=[Pattern("p", "x", 0.5)]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(text_strategy, st.lists(st.one_of(st.sampled_from(_PII), text_strategy), max_size=6)
                 .map(" ".join)))
def test_guard_pattern_loop_equals_presidio_s_pattern_loop(stock: StockPresidio, text: str) -> None:
    for rec in stock.engine.registry.recognizers:
        if not supports(rec):
            continue
        mine = analyze_patterns(rec, text)
        theirs = rec.analyze(text, rec.supported_entities)
        assert [_key(r) for r in mine] == [_key(r) for r in theirs], (rec.name, text)
        assert all(r.analysis_explanation is None for r in mine)
        explain(mine)
        assert all(r.analysis_explanation.original_score == r.score for r in mine)


_results = st.lists(st.builds(lambda e, s, n, score: RecognizerResult(e, s, s + n, score),
                              st.sampled_from(["A", "B"]), st.integers(0, 5), st.integers(1, 4),
                              st.sampled_from([0, 0.0, 0.1, 0.5, 1.0])), max_size=3)


@given(_results)
def test_remove_duplicates_equals_presidio_s(results: list[RecognizerResult]) -> None:
    expected = EntityRecognizer.remove_duplicates(list(results))
    assert [_key(r) for r in remove_duplicates(list(results))] == [_key(r) for r in expected]

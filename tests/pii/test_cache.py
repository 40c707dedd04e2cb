"""The verdict cache (``guard/pii/scan/cache.py``): same detections, no values kept, bounded."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.pii.analysis import analyze_items
from guard.pii.engine import Analyzer
from guard.pii.pool import AnalyzerSpec, ProcessAnalysis
from guard.pii.rules import PIIRules
from guard.pii.scan.cache import MAX_CACHED_DETECTIONS, MAX_CACHED_TEXT, VerdictCache
from tests.pii.test_properties import text_strategy

CONTEXTS = [(), ("phone",), ("card", "number")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(text_strategy, st.sampled_from(CONTEXTS)), min_size=1, max_size=6))
def test_cached_detections_equal_fresh_analysis(analyzer: Analyzer, items: list[tuple[str, tuple[str, ...]]]) -> None:
    cache = VerdictCache(capacity=8)
    fresh = analyze_items(analyzer, items)
    assert cache.analyze(analyzer, items) == fresh  # first pass: misses (or in-message repeats)
    assert cache.analyze(analyzer, items) == fresh  # second pass: from the cache where it fit


def test_repeated_strings_are_answered_from_the_cache(analyzer: Analyzer) -> None:
    calls: list[str] = []

    class Counting:
        def analyze(self, text: str, context: Any = None) -> Any:
            calls.append(text)
            return analyzer.analyze(text, context)

    cache = VerdictCache()
    items = [("call +1 (212) 555-0187", ("phone",)), ("open", ()), ("call +1 (212) 555-0187", ())]
    first = cache.analyze(Counting(), items)
    second = cache.analyze(Counting(), items)
    assert first == second and first[0] and first[0] != first[2]  # context words are part of the key
    assert len(calls) == 3 and (cache.hits, cache.misses) == (3, 3)


def test_cache_keeps_no_values_and_its_key_is_secret_per_instance(analyzer: Analyzer) -> None:
    secret = "alice.johnson@example.com"
    cache = VerdictCache()
    cache.analyze(analyzer, [(f"mail {secret}", ("email",))])
    stored = list(cache._entries.items())
    assert len(stored) == 1
    key, detections = stored[0]
    assert isinstance(key, bytes) and len(key) == 16
    assert secret.encode() not in key and all(secret not in repr(d) for d in detections)
    assert detections[0].entity_type == "EMAIL_ADDRESS"
    other = VerdictCache()
    assert other.digest(f"mail {secret}", ("email",)) != key  # another process, another key
    assert cache.digest("ab", ("c",)) != cache.digest("a", ("bc",)) != cache.digest("abc", ())
    assert cache.digest("\ud800 lone surrogate", ()) != cache.digest("lone surrogate", ())


def test_cache_is_bounded_in_entries_per_string_and_per_verdict(analyzer: Analyzer) -> None:
    cache = VerdictCache(capacity=3)
    for i in range(10):
        cache.analyze(analyzer, [(f"ticket {i}", ())])
    assert len(cache) == 3
    big = "x" * (MAX_CACHED_TEXT + 1)
    many = " ".join(f"user{i}@example.com" for i in range(MAX_CACHED_DETECTIONS + 1))
    cache = VerdictCache()
    result = cache.analyze(analyzer, [(big, ()), (many, ())])
    assert len(result[1]) == MAX_CACHED_DETECTIONS + 1 and len(cache) == 0
    assert VerdictCache(capacity=0).analyze(analyzer, [("open", ())]) == [[]]


async def test_analyzer_processes_answer_the_same_with_and_without_the_cache(rules: PIIRules,
                                                                            analyzer: Analyzer) -> None:
    items = [("call +1 (212) 555-0187 about ORD-2024-000981 opened 2024-05-01T10:20:31Z", ("phone",))]
    analysis = ProcessAnalysis(AnalyzerSpec.for_rules(rules), workers=1)
    await analysis.start()
    try:
        first = await analysis.analyze(items * 40, time.monotonic() + 30)
        assert first == analyze_items(analyzer, items * 40)
        off = ProcessAnalysis(AnalyzerSpec.for_rules(rules, cache_size=0), workers=1)
        await off.start()
        try:
            assert await off.analyze(items * 40, time.monotonic() + 30) == first
        finally:
            await off.aclose()
    finally:
        await analysis.aclose()

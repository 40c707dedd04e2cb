"""The Hyperscan pass of recognizer selection (``guard/pii/scan/prefilter.py``): it only skips
joined searches that cannot match, so selection equals the ``regex`` searches alone."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.pii.engine import Analyzer, result_key
from guard.pii.scan import prefilter
from guard.pii.scan.prefilter import Prefilter
from tests.pii.test_properties import text_strategy

_ANALYZER = Analyzer()
_PREFILTER = _ANALYZER._prefilter
_COVERED = [(index, rec.name, Analyzer._prefilter_group(rec, trig, exact))
            for index, (rec, trig, exact) in enumerate(_ANALYZER._plan)
            if _PREFILTER is not None and index in _PREFILTER.covered]
"""Each covered recognizer with what the pass answers for: its joined search, or its patterns."""
_SOURCES = [p.regex for rec in _ANALYZER.recognizers for p in getattr(rec, "patterns", None) or []
            if any(name == rec.name for _, name, _ in _COVERED) and "(?i)" not in p.regex]
"""Covered patterns ``re`` can generate from (it refuses a global flag after the start, which
the URL patterns' joined alternatives would need; ``from_regex`` gets the flag anyway)."""
_ASCII_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=40)
_MATCHING = st.sampled_from(_SOURCES).flatmap(
    lambda source: st.from_regex(re.compile(source, re.IGNORECASE | re.DOTALL | re.MULTILINE)))
"""Strings with a match of a covered pattern (``re`` reads Presidio's patterns like ``regex``)."""


def _regex_only(analyzer: Analyzer, text: str) -> list[str]:
    hits = {id(t): t.search(text) is not None for t in analyzer._trigger_list}
    return [rec.name for rec, trig, exact in analyzer._plan
            if (trig is None or hits[id(trig)]) and (exact is None or exact.search(text) is not None)]


def test_the_pass_covers_the_predefined_digit_and_mail_recognizers() -> None:
    assert _PREFILTER is not None, "hyperscan is a dependency on x86-64 (pyproject.toml)"
    names = {name for _, name, _ in _COVERED}
    assert {"CreditCardRecognizer", "DateRecognizer", "EmailRecognizer", "UsSsnRecognizer"} <= names
    # pattern by pattern: a back-reference (MAC) keeps its meaning
    assert "MacAddressRecognizer" in names
    assert "PhoneRecognizer" not in names  # no patterns: phonenumbers decides
    assert "UrlRecognizer" not in names  # top-level-domain lists over MAX_SOURCE: seconds to compile


def test_a_pattern_hyperscan_cannot_read_leaves_only_its_group_out() -> None:
    good = regex.compile(r"\b\d{3}-\d{4}\b", regex.IGNORECASE)
    unreadable = regex.compile(r"(?|a|b)c", regex.IGNORECASE)  # a branch reset: regex has it, PCRE syntax not
    built = prefilter.build([[good], [unreadable, good], [], [regex.compile("caf\u00e9")]])
    assert built is not None and built.covered == {0}
    assert built.candidates("call 555-0187") == {0: {0}}
    custom = Analyzer(entities=["EMAIL_ADDRESS"], custom=[])
    assert custom._prefilter is not None


def test_only_ascii_strings_without_information_separators_take_the_pass() -> None:
    assert Prefilter.applies("call +1 (212) 555-0187\n\t ok~\x7f")
    for text in ("caf\u00e9 4111 1111 1111 1111", "\uff14\uff11", "a\x1cb", "a\x1fb", "\u212a"):
        assert not Prefilter.applies(text)
    assert re.compile(r"\s").match("\x1c")  # why: Python's \s has them, PCRE's does not


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.one_of(_MATCHING, text_strategy, _ASCII_TEXT).filter(Prefilter.applies))
def test_the_pass_reports_every_recognizer_whose_joined_search_matches(text: str) -> None:
    assert _PREFILTER is not None
    candidates = _PREFILTER.candidates(text)
    for index, name, group in _COVERED:
        for position, pattern in enumerate(group):
            if pattern.search(text) is not None:
                assert position in candidates.get(index, []), (name, pattern.pattern, text)


def _assert_same_findings(text: str) -> None:
    """Every recognizer (and pattern) the regex searches would run and the pass leaves out
    finds nothing; the analysis finds the same."""
    selected = dict(_ANALYZER._selected(text))
    before = _regex_only(_ANALYZER, text)
    for rec in _ANALYZER.recognizers:
        if rec.name not in before:
            continue
        positions = selected.get(rec)
        if rec not in selected:
            assert rec.analyze(text, rec.supported_entities) == [], (rec.name, text)
        elif positions is not None:
            for index, pattern in enumerate(rec.patterns):  # patterns left out have no match
                if index not in positions:
                    assert regex.compile(pattern.regex, rec.global_regex_flags).search(text) is None, (rec.name, text)
    # whole-pipeline: the same findings as the regex searches alone
    prefilter, _ANALYZER._prefilter = _ANALYZER._prefilter, None
    try:
        expected = sorted(map(result_key, _ANALYZER.analyze(text)))
    finally:
        _ANALYZER._prefilter = prefilter
    assert sorted(map(result_key, _ANALYZER.analyze(text))) == expected, text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(text_strategy, _ASCII_TEXT, _MATCHING))
def test_selection_with_the_pass_finds_what_the_regex_searches_find(text: str) -> None:
    _assert_same_findings(text)


@pytest.mark.parametrize("text", ["2024-01-31", "alice@example.com", "4111-1111-1111-1111", "078-05-1120",
                                  "no pii here", "ORD-2024-000981", "10.0.0.1", "GB82 WEST 1234 5698 7654 32",
                                  "+1 (212) 555-0187", "00:1a:2b:3c:4d:5e", "00:1a-2b:3c:4d:5e", "see www.example.com"])
def test_selection_with_the_pass_on_known_values(text: str) -> None:
    _assert_same_findings(text)


def test_threads_scanning_at_once_each_get_their_own_scratch() -> None:
    assert _PREFILTER is not None
    texts = ["2024-01-31 and 078-05-1120", "alice@example.com", "nothing", "4111-1111-1111-1111"] * 50
    expected = [_PREFILTER.candidates(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            assert list(pool.map(_PREFILTER.candidates, texts)) == expected

"""Recall properties: guard's shortcuts never lose a finding plain Presidio makes.

* every trigger is a superset of its recognizer's patterns (a string a pattern matches
  always contains the trigger), checked on strings generated *from the patterns*;
* the fast analyzer returns exactly what ``AnalyzerEngine.analyze`` returns (also on
  generated timestamps, ids and phone numbers, ``tests/pii/machine_data.py``);
* over generated MCP results (nested JSON, lists, JSON inside text), every result plain
  Presidio finds on a string leaf above the rule threshold is covered by a guard finding.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.crypto.aead import KeyRing
from guard.jsonrpc import Kind
from guard.pii.engine import _FLAGS, TRIGGERS, Analyzer, any_pattern, result_key
from guard.pii.protect import Protector
from guard.pii.rules import PIIRules
from guard.pii.walker import Leaf, transform
from tests.pii.machine_data import machine_text

SNIPPETS = [
    "alice.johnson@example.com", "BOB@Example.ORG", "x@y.co.uk", "+1 (212) 555-0187", "212.555.0143",
    "(646) 555-0123", "+44 20 7946 0958", "+49 30 901820", "4111-1111-1111-1111", "5555 5555 5555 4444",
    "378282246310005", "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "536-22-8726", "219 09 9999",
    "192.168.10.24", "fe80::1ff:fe23:4567:890a", "00:1a:2b:3c:4d:5e", "123e4567-e89b-12d3-a456-426614174000",
    "https://example.com/a?b=1", "2024-05-01T10:22:31Z", "03/14/1984", "EMP-004211",
    "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "ORD-2024-000981", "v2.3.1", "$1,299.00",
    "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",  # Arabic-Indic digits
    "\uff10\uff11\uff12-\uff13\uff14\uff15\uff16-\uff17\uff18\uff19\uff10",  # full-width digits
]
WORDS = ["phone", "card", "ssn", "email", "iban", "the", "call", "employee", "ip", "date", ":", "-", ",", "\n"]
text_strategy = st.one_of(
    st.lists(
        st.one_of(st.sampled_from(SNIPPETS), st.sampled_from(WORDS),
                  st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
                  st.text(alphabet="0123456789 -.()+/:@abcdef\u212a\u017f", max_size=16)),
        max_size=7,
    ).map(" ".join),
    # Timestamps, ids, amounts and (mutated) phone numbers of every region: the shapes the
    # phone shortcut and the digit triggers are tuned for.
    machine_text(),
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _trigger_cases(analyzer: Analyzer) -> list[tuple[str, str, str]]:
    cases = []
    for rec in analyzer.recognizers:
        trigger = TRIGGERS.get(type(rec).__name__)
        for pattern in getattr(rec, "patterns", []) if trigger else []:
            cases.append((rec.name, pattern.regex, trigger))
    return cases


_CASES = _trigger_cases(Analyzer())


@pytest.mark.parametrize(("name", "pattern", "trigger"), _CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(_CASES)])
def test_trigger_is_superset_of_pattern(name: str, pattern: str, trigger: str) -> None:
    compiled = regex.compile(pattern, _FLAGS)
    trig = regex.compile(trigger, _FLAGS)

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(st.one_of(st.from_regex(re.compile(pattern, re.IGNORECASE | re.DOTALL | re.MULTILINE)), text_strategy))
    def check(s: str) -> None:
        if compiled.search(s):
            assert trig.search(s), (name, s)

    check()


@FAST
@given(text_strategy, st.sampled_from([(), ("phone",), ("card", "number"), ("social", "security")]))
def test_fast_analyzer_equals_plain_presidio(full_analyzer: Analyzer, text: str, ctx: tuple[str, ...]) -> None:
    fast = sorted(map(result_key, full_analyzer.analyze(text, ctx)))
    naive = sorted(map(result_key, full_analyzer.analyze_naive(text, ctx)))
    assert fast == naive


KEYS = ["email", "phone", "notes", "card_number", "ssn", "id", "name", "body", "ip", "x y", "version",
        "alice@example.com", "+1 212 555 0187", "order_id"]
json_values = st.recursive(
    st.one_of(text_strategy, st.integers(), st.integers(10**5, 10**17), st.booleans(), st.none(),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=3).map(json.dumps),
    ),
    max_leaves=12,
)


def _with_threshold(rules: PIIRules, threshold: float | None) -> PIIRules:
    """The shipped rules, or with every entity type's threshold set to ``threshold``."""
    if threshold is None:
        return rules
    entities = {e: dataclasses.replace(p, threshold=threshold) for e, p in rules.entities.items()}
    return dataclasses.replace(rules, entities=entities, _cache={})


def _leaves(payload: dict[str, Any]) -> list[Leaf]:
    leaves: list[Leaf] = []

    def collect(leaf: Leaf) -> None:
        leaves.append(leaf)

    transform(payload, Kind.RESULT, "tools/call", True, collect)
    return leaves


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(json_values, st.sampled_from([None, 0.0, 0.3, 0.5]))
def test_guard_findings_cover_plain_presidio_on_every_leaf(analyzer: Analyzer, rules: PIIRules, doc: Any,
                                                          threshold: float | None) -> None:
    """Per leaf (string, key or number), every plain ``AnalyzerEngine.analyze`` result at or above the
    rule's threshold is covered by a guard finding, at the shipped thresholds and at lower ones."""
    protector = Protector(analyzer, _with_threshold(rules, threshold), KeyRing("k1", {"k1": bytes(32)}), "d")
    payload = {"jsonrpc": "2.0", "id": 1, "result": {
        "content": [{"type": "text", "text": json.dumps(doc)}], "structuredContent": {"data": doc}}}
    scan = protector.scan(payload, Kind.RESULT, "tools/call", True, "demo", "t")
    leaves = _leaves(payload)
    assert scan.leaf_count == len(leaves)
    for index, leaf in enumerate(leaves):
        spans = scan.leaves[index].spans if index in scan.leaves else []
        for r in analyzer.analyze_naive(leaf.text):
            if r.score < protector.rules.resolve(r.entity_type, "demo", "t").threshold:
                continue
            assert any(s.start < r.end and r.start < s.end for s in spans), (leaf.text, r)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(json_values)
def test_output_is_valid_json_of_the_same_shape(protector: Protector, doc: Any) -> None:
    from tests.pii.corpus import same_shape

    payload = {"jsonrpc": "2.0", "id": 1, "result": {
        "content": [{"type": "text", "text": json.dumps(doc)}, {"type": "text", "text": str(doc)}],
        "structuredContent": {"data": doc}}}
    outcome = protector.protect(payload, Kind.RESULT, "tools/call", True, "demo", "t")
    out = outcome.payload or payload
    assert same_shape(payload, json.loads(json.dumps(out, allow_nan=False)))
    text = out["result"]["content"][0]["text"]
    assert json.loads(text) is not None or text == "null"


short_numbers = st.text(alphabet="0123456789+-() .\u0661\uff11x#", max_size=12).flatmap(
    lambda s: st.sampled_from([s, f"call {s}", f"TCK-{s}", f"{s} ext 12", f"+{s}", f"(0{s})"]))


@settings(max_examples=400, deadline=None)
@given(short_numbers)
def test_pruned_phone_regions_equal_stock_phone_recognizer(text: str) -> None:
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    from guard.pii.engine import PrunedPhoneRecognizer

    pruned, stock = _PHONES
    assert isinstance(pruned, PrunedPhoneRecognizer) and type(stock) is PhoneRecognizer
    assert sorted(map(result_key, pruned.analyze(text, ["PHONE_NUMBER"]))) == \
        sorted(map(result_key, stock.analyze(text, ["PHONE_NUMBER"])))


def _phones() -> tuple[Any, Any]:
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    from guard.pii.engine import PrunedPhoneRecognizer

    return PrunedPhoneRecognizer(), PhoneRecognizer()


_PHONES = _phones()


def _alternation_cases(analyzer: Analyzer) -> list[tuple[str, Any]]:
    return [(rec.name, rec) for rec in analyzer.recognizers if any_pattern(rec) is not None]


def _with_custom() -> Analyzer:
    from guard.pii.rules import PatternSpec, RecognizerSpec

    spec = RecognizerSpec(name="employee_id", entity="EMPLOYEE_ID",
                          patterns=(PatternSpec("emp", r"\bEMP-\d{6}\b", 0.6),), context=("employee",),
                          deny_list=("Project Nightingale", "EMP-CEO"))
    return Analyzer(custom=[spec])


_ALTERNATIONS = _alternation_cases(_with_custom())


@pytest.mark.parametrize(("name", "recognizer"), _ALTERNATIONS, ids=[c[0] for c in _ALTERNATIONS])
def test_one_search_of_the_joined_patterns_finds_a_match_iff_some_pattern_does(name: str, recognizer: Any) -> None:
    joined = any_pattern(recognizer)
    flags = recognizer.global_regex_flags
    patterns = [regex.compile(p.regex, flags) for p in recognizer.patterns]
    generated = st.one_of(*(st.from_regex(re.compile(p.regex, re.IGNORECASE | re.DOTALL | re.MULTILINE))
                            for p in recognizer.patterns), text_strategy)

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.filter_too_much])
    @given(generated, text_strategy)
    def check(found: str, around: str) -> None:
        for s in (found, f"{around} {found} {around}", around):
            assert (joined.search(s) is not None) == any(p.search(s) for p in patterns), (name, s)

    check()


def test_patterns_that_cannot_be_joined_keep_their_recognizer_on_the_trigger(full_analyzer: Analyzer) -> None:
    unjoined = {rec.name for rec in full_analyzer.recognizers if any_pattern(rec) is None}
    # MAC addresses use a back-reference, URLs a global inline flag; phone numbers have no patterns.
    assert unjoined == {"MacAddressRecognizer", "UrlRecognizer", "PhoneRecognizer"}
    assert "employee_id" in {name for name, _ in _ALTERNATIONS}  # custom recognizers (and deny lists) too

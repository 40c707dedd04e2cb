"""The phone shortcut (``guard/pii/phone.py``) finds exactly what Presidio's PhoneRecognizer finds.

Presidio runs phonenumbers' matcher once per region; guard probes the region-independent
path once and verifies only the attempts per region. These tests hold the two equal on the
machine data the shortcut is for (timestamps, ids, phone numbers of every region, mutated),
check its two assumptions against the library itself (the digit-count bound, the matcher's
retry budget), and trip when the library internals it relies on change.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
from typing import Any

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberMatcher, phonenumbermatcher
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from guard.pii import phone
from guard.pii.engine import result_key
from guard.pii.phone import PrunedPhoneRecognizer, _Probe, min_international_digits, min_valid_digits
from tests.pii.machine_data import EXAMPLE_PHONES, PRESIDIO_PHONES, machine_text, mutated_phones

FAST = PrunedPhoneRecognizer()
STOCK = PhoneRecognizer()
def _slow_ok(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _keys(results: list[Any]) -> list[tuple[str, int, int, float]]:
    return sorted(map(result_key, results))


def _spans(matches: list[tuple[str, list[Any]]]) -> dict[str, list[tuple[int, int]]]:
    return {region: [(m.start, m.end) for m in found] for region, found in matches if found}


@_slow_ok(600)
@given(machine_text())
def test_same_phone_numbers_as_presidio_on_timestamps_ids_and_phones(text: str) -> None:
    assert _keys(FAST.analyze(text, ["PHONE_NUMBER"])) == _keys(STOCK.analyze(text, ["PHONE_NUMBER"])), text


@_slow_ok(300)
@given(machine_text(), st.integers(0, 4))
def test_same_matches_per_region_with_a_small_retry_budget(text: str, max_tries: int) -> None:
    # The budget is what differs between "fails everywhere" and "matches somewhere": with a
    # tiny one, a wrong count shows up as a missing or extra match.
    assert _spans(FAST._matches(text, 1, max_tries)) == _spans(FAST._stock_matches(text, 1, max_tries)), text


def test_every_example_number_is_found_as_presidio_finds_it() -> None:
    texts = [f"call {p} now" for p in PRESIDIO_PHONES] + ["; ".join(PRESIDIO_PHONES[i:i + 5])
                                                         for i in range(0, len(PRESIDIO_PHONES), 5)]
    found = 0
    for text in texts:
        fast = _keys(FAST.analyze(text, ["PHONE_NUMBER"]))
        assert fast == _keys(STOCK.analyze(text, ["PHONE_NUMBER"])), text
        found += len(fast)
    assert found >= len(PRESIDIO_PHONES)


def test_machine_payload_values_match_presidio() -> None:
    # The benchmark's values, each region's outcome included (order numbers are valid
    # US/CA/IN numbers: a known Presidio false positive guard keeps, to stay identical).
    for text in ("TCK-20931", "2024-05-01T10:20:31Z", "ORD-2024-000981", "2024-05-01T10:20:31+02:00",
                 "ORD-2024-000981 and +1 (212) 555-0187, 020 7946 0958 ext 12"):
        assert _keys(FAST.analyze(text, ["PHONE_NUMBER"])) == _keys(STOCK.analyze(text, ["PHONE_NUMBER"]))
        assert _spans(FAST._matches(text, 1)) == _spans(FAST._stock_matches(text, 1))


def test_probe_records_only_region_dependent_attempts() -> None:
    probe = _Probe("2024-05-01T10:20:31Z", 1, 65535)
    assert list(probe) == []
    # "2024-05-01" touches the letter T and "31" the letter Z: rejected for every region
    # before parsing; only "20" (between colons) reaches the region.
    assert [(a.candidate, a.offset) for a in probe.attempts] == [("20", 14)]
    probe = _Probe("order ORD-2024-000981", 1, 65535)
    list(probe)
    assert [(a.candidate, a.offset, a.digits) for a in probe.attempts] == [("2024-000981", 10, 10)]
    probe = _Probe("no digits here", 1, 65535)
    list(probe)
    assert probe.attempts == []


def test_probe_detects_a_library_that_swallows_region_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # If a future phonenumbers caught the stand-in's exception, an attempt would look like
    # a failure for every region; the probe must notice and let the stock loop run.
    def swallowing_parse(number: str, region: Any, keep_raw_input: bool = False) -> Any:
        try:
            hash(region)
        except Exception:  # what the hypothetical library does
            pass
        raise phonenumbers.NumberParseException(phonenumbers.NumberParseException.NOT_A_NUMBER, "x")

    monkeypatch.setattr(phonenumbermatcher, "parse", swallowing_parse)
    with pytest.raises(phone._ProbeUnreliable):
        FAST._matches("call 212-555-0187", 1)
    assert FAST.analyze("call 212-555-0187", ["PHONE_NUMBER"]) == []  # the stock loop, under the same parse


# -- international attempts: one verification stands for every region --------------------------

plus_candidates = st.one_of(
    st.sampled_from([p for p in EXAMPLE_PHONES if p.startswith("+")]),
    mutated_phones().map(lambda p: p if p.startswith("+") else "+" + p),
    # Digits after the plus that are no country code but an IDD of some region (00, 011,
    # 0011...): parse retries them with the default region, which makes them regional.
    st.tuples(st.sampled_from(["+", "++", "\uff0b", "+0", "+00", "+011", "+0011", "+014", "+ 00 "]),
              st.sampled_from(["44 20 7946 0958", "1 212 555 0187", "49 30 901820", "972 3 123 4567",
                               "999 123 4567", "2125550187", "0 20 7946 0958", "800 1234 5678"]))
    .map("".join),
)


@_slow_ok(400)
@given(plus_candidates)
def test_international_attempts_have_the_same_outcome_in_every_region(candidate: str) -> None:
    def outcome(region: str) -> Any:
        match = PhoneNumberMatcher(candidate, region, leniency=1)._parse_and_verify(candidate, 0)
        return None if match is None else (match.start, match.end, str(match.number), repr(match.number))

    outcomes = {region: outcome(region) for region in FAST.supported_regions}
    if phone._international(candidate):
        assert len(set(outcomes.values())) == 1, (candidate, outcomes)


def test_international_is_decided_by_a_region_less_parse() -> None:
    assert phone._international("+1 (212) 555-0187")
    assert phone._international("\uff0b44 20 7946 0958")
    assert not phone._international("020 7946 0958")  # national: every region reads it its own way
    assert not phone._international("+0044 20 7946 0958")  # an IDD after the plus: GB reads it, US does not
    assert not phone._international("+999 123 4567")


# -- the digit-count bound: provably-failing attempts are never parsed ---------------------------

attempt_like = st.text(alphabet="0123456789+-() ./x#\u0661\uff11\u00b2ab", min_size=1, max_size=9).filter(
    lambda s: sum(c.isdigit() or c.isalpha() for c in s) < 6)


@_slow_ok(700)
@given(attempt_like)
def test_attempts_with_too_few_digits_never_verify(candidate: str) -> None:
    digits = phone._Attempt(candidate, 0, 0).digits
    for region in FAST.supported_regions:
        if digits < min(min_valid_digits(region), min_international_digits()):
            assert PhoneNumberMatcher(candidate, region, leniency=1)._parse_and_verify(candidate, 0) is None, \
                (candidate, region)


def test_no_valid_number_has_fewer_digits_than_the_bounds() -> None:
    # Exhaustive where it is cheap: every international number of 1-5 digits (country code
    # included), and every national number below each region's bound up to 4 digits.
    bound = min_international_digits()
    assert bound == 6
    for n in range(1, bound):
        for digits in itertools.product("0123456789", repeat=n):
            try:
                number = phonenumbers.parse("+" + "".join(digits))
            except phonenumbers.NumberParseException:
                continue
            assert not phonenumbers.is_valid_number(number), digits
    for region in FAST.supported_regions:
        for n in range(1, min(min_valid_digits(region), 5)):
            for digits in itertools.product("0123456789", repeat=n):
                text = "".join(digits)
                assert PhoneNumberMatcher(text, region, leniency=1)._parse_and_verify(text, 0) is None


def test_bounds_are_what_the_metadata_says() -> None:
    assert {r: min_valid_digits(r) for r in FAST.supported_regions} == {
        "US": 7, "GB": 7, "DE": 4, "FR": 9, "IL": 7, "IN": 8, "CA": 7, "BR": 8}


def test_example_numbers_all_have_enough_digits() -> None:
    # Sanity of the bound against real numbers of every region (none shorter than it).
    for text in EXAMPLE_PHONES:
        number = phonenumbers.parse(text.replace("tel:", ""), "US") if text.startswith(("+", "tel:")) else None
        if number is not None and phonenumbers.is_valid_number(number):
            assert sum(c.isdigit() for c in text) >= min_international_digits(), text


# -- tripwires: the library internals the shortcut relies on -------------------------------------

AUDITED = {
    # phonenumbers 9.0.x: the matcher's search loop, candidate checks, parse-and-verify and
    # VALID verification. If one changes, re-read it against guard/pii/phone.py's reasoning
    # (region used only by parse; a failed attempt only costs one try; resume at _search_index)
    # and update the hash.
    "PhoneNumberMatcher._find": (PhoneNumberMatcher._find, "a9e89d837331"),
    "PhoneNumberMatcher._extract_match": (PhoneNumberMatcher._extract_match, "59b5958e65b0"),
    "PhoneNumberMatcher._extract_inner_match": (PhoneNumberMatcher._extract_inner_match, "3f18c77cd6a2"),
    "PhoneNumberMatcher._parse_and_verify": (PhoneNumberMatcher._parse_and_verify, "d8adb854f326"),
    "PhoneNumberMatcher.has_next": (PhoneNumberMatcher.has_next, "5206c1c330b6"),
    "_verify": (phonenumbermatcher._verify, "6c642c22d31b"),
}


@pytest.mark.parametrize("name", sorted(AUDITED))
def test_matcher_internals_are_the_audited_ones(name: str) -> None:
    function, expected = AUDITED[name]
    digest = hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:12]
    assert digest == expected, f"phonenumbers changed {name}: re-audit guard/pii/phone.py"


def test_fast_path_is_on() -> None:
    assert phone.FAST_PATH
    assert FAST._matches("2024-05-01T10:20:31Z", 1) == []


def test_every_example_number_of_every_region_per_region() -> None:
    # International numbers are found by every region's matcher; short ones (Niue, Saint
    # Helena: 7-8 digits) are below France's national bound, so this holds the
    # international bound, region by region.
    international = [p for p in EXAMPLE_PHONES if p.startswith("+")]
    assert any(sum(c.isdigit() for c in p) < 9 for p in international)
    for text in international:
        assert _spans(FAST._matches(text, 1)) == _spans(FAST._stock_matches(text, 1)), text


# -- the probe decides international attempts itself (module docstring, 6) ----------------------

_glued = st.lists(st.one_of(plus_candidates, mutated_phones(), st.sampled_from(EXAMPLE_PHONES)), min_size=1,
                  max_size=4).flatmap(
    lambda parts: st.lists(st.sampled_from(["/", " / ", " - ", "-", " ", ". ", "(", ") ", ", ", " x", "/+", ""]),
                           min_size=len(parts), max_size=len(parts))
    .map(lambda seps: "".join(p + s for p, s in zip(parts, seps, strict=True))))


@_slow_ok(500)
@given(_glued, st.one_of(st.just(65535), st.integers(0, 6)))
def test_international_numbers_glued_to_others_match_per_region_like_the_library(text: str, max_tries: int) -> None:
    # A region that matches a whole candidate while the probe matched an international number
    # inside it resumes elsewhere than the probe: it must leave the probe's path there.
    assert _spans(FAST._matches(text, 1, max_tries)) == _spans(FAST._stock_matches(text, 1, max_tries)), text


def test_the_probe_matches_only_international_attempts_it_verified() -> None:
    text = "call +1 (212) 555-0187 or 020 7946 0958"
    verifier = PhoneNumberMatcher(text, "US", leniency=1)
    probe = _Probe(text, 1, 65535, verifier._parse_and_verify)
    found = list(probe)
    assert [(m.start, m.end) for m in found] == [(5, 22)]
    assert [a.candidate for a in probe.attempts if a.decided] == ["+1 (212) 555-0187"]
    assert found == probe.decided
    # without a verifier the probe matches nothing and walks into the number's inner groups
    plain = _Probe(text, 1, 65535)
    assert list(plain) == []
    assert len(plain.attempts) > len(probe.attempts)

"""Phone validity from metadata (``guard/pii/scan/phonevalid.py``) against stock phonenumbers.

The oracle is the library's own matcher: ``PhoneNumberMatcher(text, region,
leniency=VALID)._parse_and_verify(candidate, 0)`` on the candidate alone (the position checks
before it are the probe's, unchanged). Every generated plain candidate is decided for every
Presidio region, and also for a spread of other regions; a VALID match must be the very
same ``PhoneNumberMatch`` (start, raw string, parsed number). ``bench/phone_oracle.py`` runs
the same comparison over millions of digit runs.
"""

from __future__ import annotations

import hashlib
import inspect

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import Leniency, PhoneNumberMatcher, phonenumbermatcher, phonenumberutil

from guard.pii import phone
from guard.pii.phone import PrunedPhoneRecognizer
from guard.pii.scan.phonevalid import PLAIN_SEPARATORS, PhoneValidity, plain_digits, plus_digits
from tests.pii.machine_data import EXAMPLE_PHONES, PRESIDIO_REGIONS

VALIDITY = PhoneValidity()
OTHER_REGIONS = ("AR", "AU", "CN", "IT", "JP", "MX", "NL", "RU", "SM", "NZ", "KZ", "JE", "MG", "AG", "SE", "ZA")
MATCHERS = {r: PhoneNumberMatcher("", r, leniency=Leniency.VALID) for r in PRESIDIO_REGIONS + OTHER_REGIONS}
PREFIXES = ["", "0", "00", "000", "01", "011", "0011", "1", "44", "49", "33", "972", "91", "55", "90", "014", "0021",
            "8", "810", "39", "61", "86", "7", "800", "888", "979", "1800", "0800", "15", "03", "+"]


def library(region: str, candidate: str) -> phonenumbers.PhoneNumberMatch | None:
    matcher = MATCHERS[region]
    matcher.text = candidate
    return matcher._parse_and_verify(candidate, 0)


def fast(region: str, candidate: str) -> phonenumbers.PhoneNumberMatch | None:
    digits = plain_digits(candidate)
    assert digits is not None
    return PrunedPhoneRecognizer._plain_match(RECOGNIZER, region, _attempt(candidate), digits)


class _attempt:  # noqa: N801 - stands in for phone._Attempt (offset and candidate are all _plain_match reads)
    def __init__(self, candidate: str) -> None:
        self.offset = 0
        self.candidate = candidate


RECOGNIZER = PrunedPhoneRecognizer(validity=VALIDITY)


@st.composite
def plain_candidates(draw: st.DrawFn) -> str:
    """Digit runs of every length 3-20 after a dialling prefix, split by plain separators."""
    prefix = draw(st.sampled_from(PREFIXES[:-1]))
    body = draw(st.text(alphabet="0123456789", min_size=max(0, 3 - len(prefix)), max_size=18))
    digits = prefix + body
    out = []
    for i, c in enumerate(digits):
        if i and draw(st.integers(0, 5)) == 0:
            out.append(draw(st.sampled_from([" ", "-", ".", "/", " - ", ") ", "("])))
        out.append(c)
    text = "".join(out)
    if draw(st.booleans()) and len(text) > 3:
        text = "(" + text[:3] + ")" + text[3:]
    return text


def reaches_parse(candidate: str) -> bool:
    """The matcher's region-independent checks before ``parse`` (an attempt passed them)."""
    return (phonenumbermatcher.fullmatch(phonenumbermatcher._MATCHING_BRACKETS, candidate) is not None
            and phonenumbermatcher._PUB_PAGES.search(candidate) is None)


def _check(candidate: str, regions: tuple[str, ...]) -> None:
    if plain_digits(candidate) is None or not reaches_parse(candidate):
        return
    for region in regions:
        expected = library(region, candidate)
        got = fast(region, candidate)
        assert got == expected, (region, candidate, expected, got)


@settings(max_examples=1500, deadline=None)
@given(plain_candidates())
def test_plain_verdict_equals_phonenumbers_for_presidio_regions(candidate: str) -> None:
    _check(candidate, PRESIDIO_REGIONS)


@settings(max_examples=400, deadline=None)
@given(plain_candidates())
def test_plain_verdict_equals_phonenumbers_for_other_regions(candidate: str) -> None:
    _check(candidate, OTHER_REGIONS)


def test_plain_verdict_on_every_example_number_in_national_and_idd_form() -> None:
    checked = 0
    for text in EXAMPLE_PHONES:
        national = text.lstrip("+") if text.startswith("+") else text
        for candidate in (national, "00" + national, "011 " + national, national.replace(" ", "")):
            if plain_digits(candidate) is not None:
                _check(candidate, PRESIDIO_REGIONS)
                checked += 1
    assert checked > 1000


def test_plain_candidates_are_exactly_digits_and_plain_separators() -> None:
    assert plain_digits("(212) 555-0187") == "2125550187"
    assert plain_digits("2024-05-01") == "20240501"
    assert plain_digits("12") is None  # fewer than 3 digits: viability differs with punctuation
    for outside in ("+1 212 555 0187", "212 555 0187 x12", "212-555-0187#", "212,555", "212;ext=1", "1-800-FLOWERS",
                    "\u0662\u0661\u0662 555 0187", "212\u00a0555\u00a00187", "212 555 0187 ~1", "2" * 251):
        assert plain_digits(outside) is None, outside
    assert set(PLAIN_SEPARATORS) <= set(phonenumberutil._VALID_PUNCTUATION)


AUDITED = {
    # phonenumbers 9.0.x: the steps guard/pii/scan/phonevalid.py mirrors. If one changes,
    # re-read it against that module and update the hash.
    "parse": (phonenumbers.parse, "6e48c9961d11"),
    "_maybe_extract_country_code": (phonenumberutil._maybe_extract_country_code, "57b28e3098d9"),
    "_maybe_strip_i18n_prefix_and_normalize": (phonenumberutil._maybe_strip_i18n_prefix_and_normalize, "b53e0190dd4d"),
    "_parse_prefix_as_idd": (phonenumberutil._parse_prefix_as_idd, "fe62f067f748"),
    "_extract_country_code": (phonenumberutil._extract_country_code, "c6e104d68e60"),
    "_maybe_strip_national_prefix_carrier_code": (phonenumberutil._maybe_strip_national_prefix_carrier_code,
                                                  "462428c53434"),
    "_test_number_length": (phonenumberutil._test_number_length, "0fae643cf4d3"),
    "_maybe_strip_extension": (phonenumberutil._maybe_strip_extension, "7a87aae1f355"),
    "_build_national_number_for_parsing": (phonenumberutil._build_national_number_for_parsing, "4fe268be2470"),
    "is_valid_number_for_region": (phonenumberutil.is_valid_number_for_region, "cbedb02b9bc0"),
    "_region_code_for_number_from_list": (phonenumberutil._region_code_for_number_from_list, "5e9c18e439c3"),
    "_number_type_helper": (phonenumberutil._number_type_helper, "6dbc09bac296"),
    "_is_number_matching_desc": (phonenumberutil._is_number_matching_desc, "67f60669b1e0"),
    "_is_national_prefix_present_if_required": (phonenumbers.phonenumbermatcher._is_national_prefix_present_if_required,
                                                "37d0807934e6"),
    "_choose_formatting_pattern_for_number": (phonenumberutil._choose_formatting_pattern_for_number, "08b6398e56cc"),
    # the plus path (PhoneValidity.plus_parse)
    "_check_region_for_parsing": (phonenumberutil._check_region_for_parsing, "f39eb174fddc"),
    "_is_viable_phone_number": (phonenumberutil._is_viable_phone_number, "2b4cb36ff0c4"),
    "_extract_possible_number": (phonenumberutil._extract_possible_number, "102c591aa7ba"),
    "_normalize": (phonenumberutil._normalize, "7764d5985eaa"),
}


@pytest.mark.parametrize("name", sorted(AUDITED))
def test_mirrored_library_steps_are_the_audited_ones(name: str) -> None:
    function, expected = AUDITED[name]
    digest = hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:12]
    assert digest == expected, f"phonenumbers changed {name}: re-audit guard/pii/scan/phonevalid.py ({digest})"


# -- plain international candidates: a plus sign, then a plain candidate -------------------------

@st.composite
def plus_candidates(draw: st.DrawFn) -> str:
    """``+`` then digits starting with a country code (or not), split by plain separators."""
    code = draw(st.sampled_from(["1", "44", "49", "33", "972", "91", "55", "39", "7", "86", "61", "378", "262", "800",
                                 "882", "979", "0", "00", "011", "2", "42", "999", ""]))
    body = draw(st.text(alphabet="0123456789", min_size=0, max_size=16))
    out = []
    for i, c in enumerate(code + body):
        if i and draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from([" ", "-", ".", "/", " - ", ") ", "(", " ("])))
        out.append(c)
    return draw(st.sampled_from(["+", "+ ", "+(", "+-"])) + "".join(out)


def _check_plus(candidate: str, regions: tuple[str, ...]) -> None:
    digits = plus_digits(candidate)
    if digits is None or not reaches_parse(candidate):
        return
    assert (VALIDITY.plus_parse(digits) is not None) is phone._international(candidate), candidate
    if not phone._international(candidate):
        return  # region-dependent: not decided from metadata
    got = RECOGNIZER._plus_match(candidate, 0, digits)
    for region in regions:
        expected = library(region, candidate)
        assert got == expected, (region, candidate, expected, got)


@settings(max_examples=1500, deadline=None)
@given(plus_candidates())
def test_plus_verdict_equals_phonenumbers_in_every_presidio_region(candidate: str) -> None:
    _check_plus(candidate, PRESIDIO_REGIONS)


@settings(max_examples=300, deadline=None)
@given(plus_candidates())
def test_plus_verdict_equals_phonenumbers_in_other_regions(candidate: str) -> None:
    _check_plus(candidate, OTHER_REGIONS)


def test_plus_verdict_on_every_example_number() -> None:
    checked = 0
    for text in EXAMPLE_PHONES:
        national = text.lstrip("+")
        for candidate in ("+" + national, "+" + national.replace(" ", ""), "+ " + national, "+0" + national):
            if plus_digits(candidate) is not None:
                _check_plus(candidate, PRESIDIO_REGIONS)
                checked += 1
    assert checked > 1000


def test_plus_candidates_are_a_plus_then_a_plain_candidate() -> None:
    assert plus_digits("+1 (212) 555-0187") == "12125550187"
    for outside in ("1 212 555 0187", "++1 212 555 0187", "+1 212 555 0187 x1", "(+1) 212 555 0187", "\uff0b1 212",
                    "+" + "2" * 250, "+12"):
        assert plus_digits(outside) is None, outside
    assert plus_digits("+" + "2" * 249) is not None

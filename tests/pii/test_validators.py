"""Validators, normalization and structural evidence: the pure functions behind "validators over thresholds"."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.pii import validators as v
from guard.pii.evidence import evidence, header_words, words_before
from guard.pii.normalize import normalize
from tests.pii import values

GOOD = [
    ("CREDIT_CARD", "4111 1111 1111 1111"), ("CREDIT_CARD", "378282246310005"), ("CREDIT_CARD", "5555-5555-5555-4444"),
    ("IBAN_CODE", "GB82 WEST 1234 5698 7654 32"), ("IBAN_CODE", "de89370400440532013000"),
    ("US_SSN", "536-22-8726"), ("US_SSN", "536 22 8726"), ("US_ITIN", "912-71-1234"), ("UK_NHS", "943 476 5919"),
    ("MEDICAL_LICENSE", "AB1234563"), ("CRYPTO", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
    ("CRYPTO", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"), ("MAC_ADDRESS", "00:1a:2b:3c:4d:5e"),
    ("IP_ADDRESS", "203.0.113.9"), ("IP_ADDRESS", "fe80::1ff:fe23:4567:890a"),
    ("EMAIL_ADDRESS", "alice.johnson@example.com"), ("PHONE_NUMBER", "+1 (212) 555-0187"),
    ("PHONE_NUMBER", "(415) 555-0122"), ("PHONE_NUMBER", "+44 20 7946 0958"), ("PHONE_NUMBER", "020 7946 0958"),
    ("PHONE_NUMBER", "050-234-2938"),  # an Israeli mobile in the North American grouping
    ("PHONE_NUMBER", "(11) 2345-3356"),  # Brazil, national format
]
BAD = [
    ("CREDIT_CARD", "4111 1111 1111 1112"), ("IBAN_CODE", "GB82 WEST 1234 5698 7654 33"),
    ("US_SSN", "000-12-3456"), ("US_SSN", "666-12-3456"), ("US_SSN", "912-34-5678"), ("US_SSN", "536228726"),
    ("US_ITIN", "912-45-1234"), ("UK_NHS", "943 476 5918"), ("MEDICAL_LICENSE", "AB1234564"),
    ("CRYPTO", "1BoatSLRHtKNngkdXEeobR76b53LETtpyA"), ("MAC_ADDRESS", "00:00:00:00:00:00"),
    ("IP_ADDRESS", "1.2.3.256"), ("IP_ADDRESS", "01.2.3.4"), ("EMAIL_ADDRESS", "a@b"), ("EMAIL_ADDRESS", "a@b.c0m"),
    ("PHONE_NUMBER", "2024-000981"), ("PHONE_NUMBER", "2125550187"), ("PHONE_NUMBER", "1716558000"),
]


@pytest.mark.parametrize(("entity", "text"), GOOD)
def test_valid_values_pass(entity: str, text: str) -> None:
    assert v.validate(entity, text) is True


@pytest.mark.parametrize(("entity", "text"), BAD)
def test_invalid_values_fail(entity: str, text: str) -> None:
    assert v.validate(entity, text) is False


def test_types_without_a_sufficient_validator_say_so() -> None:
    for entity in ("US_BANK_NUMBER", "US_PASSPORT", "US_DRIVER_LICENSE", "DATE_TIME", "ABA_ROUTING_NUMBER"):
        assert v.validate(entity, "123456789") is None
    assert v.aba_routing("011000015") and not v.aba_routing("011000016")


@given(st.randoms(use_true_random=False))
def test_generated_corpus_values_validate(rng: random.Random) -> None:
    assert v.credit_card(values.card(rng))
    assert v.iban(values.iban(rng))
    assert v.us_ssn(values.ssn(rng, "dash"))
    assert v.uk_nhs(values.nhs(rng))
    assert v.bitcoin(values.bitcoin(rng))
    assert v.dea(values.dea(rng))
    assert v.us_itin(values.itin(rng))
    assert v.aba_routing(values.aba_routing(rng))
    assert v.email_address(values.email(rng))


EVASIONS = [
    ("\uff14\uff11\uff11\uff11 1111 1111 1111", "4111 1111 1111 1111"),  # full-width
    ("\u0664\u0661\u0661\u0661", "4111"),  # Arabic-Indic
    ("\U0001d7d2\U0001d7cf", "41"),  # mathematical bold
    ("41\u200b11\u00ad11", "411111"),  # zero-width space, soft hyphen
    ("alice&#64;example.com", "alice@example.com"),
    ("alice&amp;#64;example.com", "alice@example.com"),  # encoded twice
    ("alice%40example.com", "alice@example.com"),
    ("alice\\u0040example.com", "alice@example.com"),
    ("alice\\\\\\u0040example.com", "alice@example.com"),  # JSON escape inside a JSON string
    ('{\\"email\\": 1}', '{"email": 1}'),
    ("+1\u2011212\u2013555 0187", "+1-212-555 0187"),  # non-breaking hyphen, en dash
]


@pytest.mark.parametrize(("original", "expected"), EVASIONS)
def test_normalized_view_decodes_and_maps_back(original: str, expected: str) -> None:
    view = normalize(original)
    assert view.text == expected
    start, end = view.span(0, len(view.text))
    assert (start, end) == (0, len(original))


def test_plain_ascii_is_the_identity_view() -> None:
    view = normalize("call +1 (212) 555-0187 now")
    assert view.identity and view.span(5, 22) == (5, 22)


@given(st.text(max_size=40))
def test_every_view_character_maps_inside_the_original(text: str) -> None:
    view = normalize(text)
    for i in range(len(view.text)):
        start, end = view.span(i, i + 1)
        assert 0 <= start < end <= len(text)


def test_labels_are_evidence() -> None:
    assert evidence("PHONE_NUMBER", ("home", "phone"), "x", 0).positive
    assert words_before("Reach her at Tel: 0123", 18) == ("reach", "her", "at", "tel")
    table = "id,name,phone\n1,Bob,020 7946 0958\n"
    assert header_words(table, table.index("020")) == ("phone",)
    assert header_words("Hello, dear world, again\nand, more", 30) == ()  # ragged prose is no table
    md = "| id | ssn |\n|---|---|\n| 1 | 536228726 |"
    assert header_words(md, md.index("5362")) == ("ssn",)
    quiet = evidence("IP_ADDRESS", (), "released version 1.2.3.4", 17)
    assert quiet.negative and not quiet.positive

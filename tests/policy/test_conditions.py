"""The argument-condition language: three-valued evaluation, typing, quantifiers, normalization."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.policy.casbin_ref import ref_evaluate
from guard.policy.conditions import (
    UNDECIDABLE,
    ConditionError,
    Truth,
    all_of,
    fold,
    normalize_path,
    parse_condition,
)


def value(cond: str, args: Any) -> Truth:
    parsed = parse_condition(cond)
    assert parsed is not None
    return parsed.evaluate(args)


U = None  # undecidable, for readable tables


@pytest.mark.parametrize(
    ("cond", "args", "expected"),
    [
        ("database == analytics", {"database": "analytics"}, True),
        ("database == analytics", {"database": "analytics2"}, False),
        ("database == analytics", {}, U),  # missing: undecidable
        ("database == analytics", {"database": None}, U),  # null where text is expected
        ("database == analytics", {"database": ["analytics"]}, U),  # a list where a scalar is expected
        ("database == analytics", {"database": {"name": "analytics"}}, U),
        ("database == analytics", {"database": 5}, U),  # a number where text is expected
        ("database != prod", {"database": "analytics"}, True),
        ("database != prod", {"database": "prod"}, False),
        ("database != prod", {}, U),
        ("database != prod", {"database": {"name": "x"}}, U),
        ("limit == 10", {"limit": 10}, True),
        ("limit == 10", {"limit": 10.0}, True),
        ("limit == 10", {"limit": "10"}, True),
        ("limit == 10", {"limit": " 1e1 "}, True),
        ("limit == 10", {"limit": "ten"}, U),
        ("limit == 10", {"limit": True}, U),  # True == 1 in Python: not a number here
        ("flag == true", {"flag": True}, True),
        ("flag == true", {"flag": False}, False),
        ("flag == true", {"flag": "true"}, True),
        ("flag == true", {"flag": "yes"}, U),
        ("flag == true", {"flag": 1}, U),
        ("x == null", {"x": None}, True),
        ("x == null", {"x": "null"}, False),
        ("x == null", {}, U),
        ("zip == 01234", {"zip": "01234"}, True),  # not a JSON number: compared as text
        ("database in analytics|reporting", {"database": "reporting"}, True),
        ("database in analytics|reporting", {"database": "prod"}, False),
        ("database in analytics|reporting", {"database": ["prod"]}, U),
        ("database not in prod|staging", {"database": "analytics"}, True),
        ("database not in prod|staging", {"database": "prod"}, False),
        ("database not in prod|staging", {}, U),
        ("limit <= 100", {"limit": 100}, True),
        ("limit <= 100", {"limit": 101}, False),
        ("limit <= 100", {"limit": "5"}, True),  # a numeric string is the number servers read
        ("limit > 1000", {"limit": "5000"}, True),
        ("limit > 1000", {"limit": "1e400"}, True),
        ("limit > 1000", {"limit": "0x2000"}, U),
        ("limit > 1000", {"limit": "5_000"}, U),
        ("limit > 1000", {"limit": "+5000"}, U),
        ("limit > 1000", {"limit": "\uff15\uff10\uff10\uff10"}, U),  # full-width digits
        ("limit > 1000", {"limit": "Infinity"}, U),
        ("limit <= 100", {"limit": True}, U),
        ("limit <= 100", {"limit": None}, U),
        ("limit <= 100", {"limit": [5]}, U),
        ("limit > 0 && limit < 10", {"limit": 5}, True),
        ("limit > 0 && limit < 10", {"limit": 10}, False),
        ("a == 1 && b == 2", {"a": 2}, False),  # false wins over undecidable
        ("a == 1 && b == 2", {"a": 1}, U),
        ("to glob *@example.com", {"to": "ada@example.com"}, True),
        ("to glob *@example.com", {"to": "ada@example.com.evil.test"}, False),
        ("to glob *@example.com", {"to": "ada@EXAMPLE.com"}, False),
        ("to glob *@example.com", {"to": 5}, U),
        ("to ~glob *@example.com", {"to": " Ada@EXAMPLE.com"}, True),
        ("options.mode == fast", {"options": {"mode": "fast"}}, True),
        ("options.mode == fast", {"options": "mode=fast"}, U),
        ("options.mode == fast", {"options": [{"mode": "fast"}]}, U),
        ("options.mode == fast", {"options": None}, U),
        ("options.mode absent", {"options": None}, True),
        ("dry_run exists", {"dry_run": False}, True),
        ("dry_run exists", {"dry_run": None}, True),
        ("dry_run exists", {}, False),
        ("force absent", {}, True),
        ("force absent", {"force": False}, False),
        ("force absent", {"force": UNDECIDABLE}, U),
        ("paths[all] under /srv/public", {"paths": ["/srv/public/a", "/srv/public/b/c"]}, True),
        ("paths[all] under /srv/public", {"paths": ["/srv/public/a", "/etc/passwd"]}, False),
        ("paths[all] under /srv/public", {"paths": ["/srv/public/a", "relative"]}, U),
        ("paths[all] under /srv/public", {"paths": []}, True),
        ("paths[all] under /srv/public", {"paths": "/srv/public/a"}, U),  # not a list
        ("paths[all] under /srv/public", {}, U),
        ("paths[*] under /srv/public", {"paths": ["/srv/public/a", "/etc/passwd"]}, False),
        ("to[any] ~glob *@evil.example", {"to": ["a@example.com", "b@EVIL.example"]}, True),
        ("to[any] ~glob *@evil.example", {"to": ["a@example.com"]}, False),
        ("to[any] ~glob *@evil.example", {"to": ["a@example.com", 7]}, U),
        ("to[any] ~glob *@evil.example", {"to": []}, False),
        ("items[all].path under /srv", {"items": [{"path": "/srv/a"}, {"path": "/srv/b"}]}, True),
        ("items[all].path under /srv", {"items": [{"path": "/srv/a"}, {}]}, U),
        ("database == analytics", None, U),
        ("database == analytics", ["database"], U),
        ("database == analytics", UNDECIDABLE, U),
        ("database exists", UNDECIDABLE, U),
        ("database == analytics", {"database": UNDECIDABLE}, U),
    ],
)
def test_condition_table(cond: str, args: Any, expected: Truth) -> None:
    assert value(cond, args) is expected
    assert ref_evaluate(args, cond) is expected, "the reference twin disagrees"


@pytest.mark.parametrize("variant", ["C001", "c001", " C001", "C001 ", "\tc001\n", "C 001", "\uff43\uff10\uff10\uff11",
                                     "C\u200b001", "C\u00ad001"])
def test_normalized_equality_holds_for_case_and_whitespace_variants(variant: str) -> None:
    assert value("customer_id ~== C001", {"customer_id": variant}) is True
    assert value("customer_id ~in C001|C002", {"customer_id": variant}) is True
    assert value("customer_id ~!= C001", {"customer_id": variant}) is False


def test_fold_is_nfkc_casefold_without_spaces_or_format_characters() -> None:
    assert fold(" Straße\u200b ") == "strasse"
    assert fold("\uff21\uff22\uff23 d") == "abcd"
    assert fold("C001") == "c001"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/srv/public/a.txt", True),
        ("/srv/public", True),
        ("/srv/public/", True),
        ("/srv/public/docs/../a.txt", True),
        ("/srv/public/../secret", False),
        ("/srv/public/./../secret", False),
        ("/srv/public/../../srv/public/x", True),
        ("//srv//public//x", True),
        ("/srv/publicity/x", False),
        ("/srv/public/..", False),
        ("/../../srv/public/x", True),
        ("srv/public/x", U),
        ("./srv/public/x", U),
        ("~/public", U),
        ("/srv/public/a\\..\\..\\secret", U),
        ("/srv/public/a\x00", U),
        ("/srv/public/a\n", U),
        ("file:///srv/public/a.txt", True),
        ("file://localhost/srv/public/a.txt", True),
        ("file:///srv/public/%2e%2e/secret", False),
        ("file:///srv/public/%2E%2E/secret", False),
        ("file:///srv/public/a%2Fb", True),
        ("file:///srv/public/%ff", U),
        ("file://evil.example/srv/public/a", U),
        ("file:///srv/public/a?x=../../etc", U),
    ],
)
def test_path_traversal_is_normalized_before_under(path: str, expected: Truth) -> None:
    assert value("path under /srv/public/", {"path": path}) is expected


def test_under_root_allows_any_absolute_path() -> None:
    assert value("path under /", {"path": "/etc/passwd"}) is True
    assert value("path under /", {"path": "relative"}) is None


def test_normalize_path_pops_at_root_like_posix() -> None:
    assert normalize_path("/a/../../b") == "/b"
    assert normalize_path("/") == "/"


@pytest.mark.parametrize(
    "cond",
    [
        "database",
        "database =! x",
        "database ==",
        "x exists 1",
        "limit <= ten",
        "limit <= inf",
        "limit <= 1_000",
        "path under relative/dir",
        "path under file:///srv",
        "to glob ^a.*$",
        "a.b.c.d.e.f.g.h.i == 1",
        "1abc == 1",
        "__import__('os').system('id') == 1",
        "a == 1 && && b == 2",
        "x in a||b",
        "x[some] == 1",
        "x[] == 1",
        "x ~under /srv",
        " && ".join(["a == 1"] * 17),
        "a == \x07",
    ],
)
def test_bad_conditions_are_refused(cond: str) -> None:
    with pytest.raises(ConditionError):
        parse_condition(cond)


def test_empty_condition_is_none() -> None:
    assert parse_condition("") is None
    assert parse_condition("   ") is None


def test_condition_values_are_data_not_code() -> None:
    """Request data that looks like an expression is compared as a string, never evaluated."""
    cond = "x == __import__('os').getcwd()"
    parsed = parse_condition(cond)
    assert parsed is not None
    assert not parsed.holds({"x": "/"})
    assert parsed.holds({"x": "__import__('os').getcwd()"})


def test_failing_lists_the_clauses_that_are_not_true() -> None:
    parsed = parse_condition("a == 1 && b == 2 && c == 3")
    assert parsed is not None
    assert parsed.failing({"a": 1, "b": 3}) == ["b == 2", "c == 3 (undecidable)"]


# -- properties over random JSON ----------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12), st.sampled_from(["C001", " c001", "5000", "1e3", "true", "null", "", "/srv/a",
                                                           "/srv/../etc", "a@evil.example", "A@EXAMPLE.COM"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["a", "b", "x", "to", "id"]), inner, max_size=4)),
    max_leaves=12)
arguments = st.one_of(json_values, st.dictionaries(st.sampled_from(["a", "b", "x", "to", "id"]), json_values,
                                                    max_size=4), st.just(UNDECIDABLE))
CLAUSES = ["id == C001", "id ~== C001", "id != C001", "id ~!= C001", "id in C001|5|true", "id ~not in c001|x",
           "a > 1000", "a <= 1e3", "a == 10", "a == null", "a == true", "a exists", "b absent", "to glob *@example.com",
           "to ~glob *@EVIL.example", "x under /srv", "to[any] ~glob *@evil.example", "to[all] glob *@example.com",
           "x[all] under /srv", "x[*] under /srv", "a.b == 1", "a[any].b[all] ~== C001", "x.a.b exists"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(CLAUSES), min_size=1, max_size=3), arguments)
def test_evaluation_is_total_three_valued_and_agrees_with_the_reference(clauses: list[str], args: Any) -> None:
    """Random JSON of any type never raises; && is Kleene conjunction; the reference twin agrees."""
    cond = " && ".join(clauses)
    truth = value(cond, args)
    assert truth in (True, False, None)
    assert truth == all_of(value(c, args) for c in clauses)
    assert truth == ref_evaluate(args, cond)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_a_value_a_server_reads_as_a_number_above_the_bound_never_escapes_a_deny(raw: Any) -> None:
    """``deny, limit > 1000`` is never *false* for a value that a lenient parser reads as more than 1000."""
    lenient: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        lenient = float(raw)
    elif isinstance(raw, str):
        try:
            lenient = float(raw)  # Python's float: whitespace, '+', '_', full-width digits, 'inf'
        except ValueError:
            lenient = None
    if lenient is not None and not math.isnan(lenient) and lenient > 1000:
        assert value("limit > 1000", {"limit": raw}) is not False


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("cC0o1 \t\u00a0\u200b\uff43\uff10\uff11")), max_size=8))
def test_a_variant_the_server_normalizes_to_the_held_id_never_escapes_a_deny(text: str) -> None:
    """The demo server reads ids as ``strip().upper()``: any string it reads as C001 is held."""
    if text.strip().upper() == "C001":
        assert value("customer_id ~== C001", {"customer_id": text}) is True


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, max_size=5))
def test_any_quantifier_catches_one_matching_element_whatever_else_the_list_holds(extra: list[Any]) -> None:
    args = {"to": [*extra, "mallory@EVIL.example"]}
    assert value("to[any] ~glob *@evil.example", args) is True

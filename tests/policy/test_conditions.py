"""The argument-condition language: operators, fail-closed typing, path normalization."""

from __future__ import annotations

from typing import Any

import pytest

from guard.policy.conditions import ConditionError, normalize_path, parse_condition


def holds(cond: str, args: Any) -> bool:
    parsed = parse_condition(cond)
    assert parsed is not None
    return parsed.holds(args)


@pytest.mark.parametrize(
    ("cond", "args", "expected"),
    [
        ("database == analytics", {"database": "analytics"}, True),
        ("database == analytics", {"database": "analytics2"}, False),
        ("database == analytics", {}, False),
        ("database == analytics", {"database": ["analytics"]}, False),
        ("database != prod", {"database": "analytics"}, True),
        ("database != prod", {"database": "prod"}, False),
        ("database != prod", {}, False),  # missing is never "not equal": fail closed
        ("database != prod", {"database": {"name": "x"}}, False),
        ("limit == 10", {"limit": 10}, True),
        ("limit == 10", {"limit": 10.0}, True),
        ("limit == 10", {"limit": "10"}, True),
        ("flag == true", {"flag": True}, True),
        ("flag == true", {"flag": 1}, False),
        ("x == null", {"x": None}, True),
        ("database in analytics|reporting", {"database": "reporting"}, True),
        ("database in analytics|reporting", {"database": "prod"}, False),
        ("database not in prod|staging", {"database": "analytics"}, True),
        ("database not in prod|staging", {"database": "prod"}, False),
        ("database not in prod|staging", {}, False),
        ("limit <= 100", {"limit": 100}, True),
        ("limit <= 100", {"limit": 101}, False),
        ("limit <= 100", {"limit": "5"}, False),
        ("limit <= 100", {"limit": True}, False),
        ("limit > 0 && limit < 10", {"limit": 5}, True),
        ("limit > 0 && limit < 10", {"limit": 10}, False),
        ("to glob *@example.com", {"to": "ada@example.com"}, True),
        ("to glob *@example.com", {"to": "ada@example.com.evil.test"}, False),
        ("to glob *@example.com", {"to": 5}, False),
        ("options.mode == fast", {"options": {"mode": "fast"}}, True),
        ("options.mode == fast", {"options": "mode=fast"}, False),
        ("dry_run exists", {"dry_run": False}, True),
        ("dry_run exists", {}, False),
        ("force absent", {}, True),
        ("force absent", {"force": False}, False),
        ("paths[*] under /srv/public", {"paths": ["/srv/public/a", "/srv/public/b/c"]}, True),
        ("paths[*] under /srv/public", {"paths": ["/srv/public/a", "/etc/passwd"]}, False),
        ("paths[*] under /srv/public", {"paths": "/srv/public/a"}, False),
        ("database == analytics", None, False),
        ("database == analytics", ["database"], False),
    ],
)
def test_condition_table(cond: str, args: Any, expected: bool) -> None:
    assert holds(cond, args) is expected


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
        ("srv/public/x", False),
        ("./srv/public/x", False),
        ("~/public", False),
        ("/srv/public/a\\..\\..\\secret", False),
        ("/srv/public/a\x00", False),
        ("/srv/public/a\n", False),
        ("file:///srv/public/a.txt", True),
        ("file://localhost/srv/public/a.txt", True),
        ("file:///srv/public/%2e%2e/secret", False),
        ("file:///srv/public/%2E%2E/secret", False),
        ("file:///srv/public/a%2Fb", True),
        ("file:///srv/public/%ff", False),
        ("file://evil.example/srv/public/a", False),
        ("file:///srv/public/a?x=../../etc", False),
    ],
)
def test_path_traversal_is_normalized_before_under(path: str, expected: bool) -> None:
    assert holds("path under /srv/public/", {"path": path}) is expected


def test_under_root_allows_any_absolute_path() -> None:
    assert holds("path under /", {"path": "/etc/passwd"})
    assert not holds("path under /", {"path": "relative"})


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
        "path under relative/dir",
        "path under file:///srv",
        "to glob ^a.*$",
        "a.b.c.d.e.f.g.h.i == 1",
        "1abc == 1",
        "__import__('os').system('id') == 1",
        "a == 1 && && b == 2",
        "x in a||b",
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


def test_failing_lists_the_clauses_that_do_not_hold() -> None:
    parsed = parse_condition("a == 1 && b == 2")
    assert parsed is not None
    assert parsed.failing({"a": 1, "b": 3}) == ["b == 2"]

"""Anchored glob semantics, checked against a regex reference, and ReDoS resistance."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.policy.glob import MAX_PATTERN_LENGTH, MAX_WILDCARDS, Glob, GlobError, compile_glob, covers


def reference(pattern: str, value: str) -> bool:
    """The documented semantics as a (backtracking, small-input-only) regular expression."""
    if pattern == "*":
        return True
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        ch = pattern[i]
        out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(out), value, re.DOTALL) is not None


patterns = st.text(alphabet="ab/*?.", min_size=1, max_size=8).filter(lambda p: "***" not in p)
values = st.text(alphabet="ab/.", max_size=10)


@settings(max_examples=3000, deadline=None)
@given(patterns, values)
def test_matcher_agrees_with_regex_reference(pattern: str, value: str) -> None:
    assert Glob(pattern).match(value) == reference(pattern, value)


@settings(max_examples=500, deadline=None)
@given(patterns, patterns, values)
def test_covers_is_sound(general: str, specific: str, value: str) -> None:
    g, s = Glob(general), Glob(specific)
    if covers(g, s) and s.match(value):
        assert g.match(value)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("read_file", "read_file", True),
        ("read_file", "read_file_x", False),
        ("read_file", "xread_file", False),
        ("find_*", "find_customer", True),
        ("find_*", "find_", True),
        ("find_*", "find_a/b", False),
        ("*", "", True),
        ("*", "a/b/c", True),
        ("tools/*", "tools/call", True),
        ("tools/*", "tools", False),
        ("notifications/*", "notifications/roots/list_changed", False),
        ("notifications/**", "notifications/roots/list_changed", True),
        ("customers://*", "customers://C001", True),
        ("customers://*", "customers://{customer_id}", True),
        ("customers://*", "customers://C001/notes", False),
        ("file:///srv/public/**", "file:///srv/public/a/b.txt", True),
        ("file:///srv/public/**", "file:///srv/publicity", False),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[a]", "[a]", True),
        ("[a]", "a", False),
        ("f.o", "fxo", False),
    ],
)
def test_glob_table(pattern: str, value: str, expected: bool) -> None:
    assert Glob(pattern).match(value) is expected


@pytest.mark.parametrize(
    "pattern",
    ["*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", "**a**a**a**a**a**a**a**a**b", "*?*?*?*?*?*?*?*?x", "a*a*a*a*a*a*a*a*"],
)
def test_catastrophic_backtracking_pattern_is_linear(pattern: str) -> None:
    """The classic ReDoS shape (fnmatch/re take exponential time here) finishes in milliseconds."""
    glob = Glob(pattern)
    victim = "a" * 5000
    started = time.perf_counter()
    glob.match(victim)
    glob.match(victim.replace("a", "a/", 100))
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "pattern",
    ["", "^find_.*$", "regex:(a+)+$", "re:.*", "a***b", "x" * (MAX_PATTERN_LENGTH + 1),
     "*" + "a*" * MAX_WILDCARDS, "a\nb", "a\x00"],
)
def test_unacceptable_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(GlobError):
        Glob(pattern)


def test_compile_glob_memoises() -> None:
    assert compile_glob("find_*") is compile_glob("find_*")

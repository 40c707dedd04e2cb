"""Subjects, roles, servers and targets from requests cannot change what the policy means.

Request data is only ever compared with policy strings (never parsed as CSV, never spliced
into a matcher, never evaluated); these tests name the attacks that would work otherwise.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.context import Principal
from guard.policy.casbin_ref import build_enforcer, casbin_decide
from guard.policy.engine import INVALID_TARGET
from tests.policy.conftest import snapshot, user

POLICY = """
g, role:support, role:analyst
p, role:analyst, demo, tools/call, find_customer, allow
p, role:admin, demo, *, *, allow
p, user:alice, demo, tools/list, *, allow
"""

INJECTED_SUBJECTS = [
    "alice, role:admin",
    "x,role:admin",
    'x", "role:admin',
    "x\np, *, *, *, *, allow",
    "x\r\ng, user:x, role:admin",
    "role:admin",
    "*",
    "alice\x00",
    "alice\u2028role:admin",
    "user:alice",
]


@pytest.mark.parametrize("subject", INJECTED_SUBJECTS)
def test_subject_with_csv_syntax_grants_nothing(subject: str) -> None:
    snap = snapshot(POLICY)
    principal = Principal(subject=subject)
    for method, target in (("tools/call", "delete_customer"), ("tools/call", "find_customer"), ("tools/list", "")):
        assert not snap.decide(principal, "demo", method, target, {}).allowed


@pytest.mark.parametrize(
    "role",
    ["analyst,admin", "admin ", " admin", "Admin", "admin\n", "support\np, *, *, *, *, allow", "role:admin", "*",
     'admin"', "analyst && true"],
)
def test_role_claim_with_csv_syntax_grants_nothing_extra(role: str) -> None:
    snap = snapshot(POLICY)
    decision = snap.decide(Principal(subject="mallory", roles=(role,)), "demo", "tools/call", "delete_customer", {})
    assert not decision.allowed


@pytest.mark.parametrize(
    "target",
    ["find_customer\n", "find_customer\x00", "find_customer\r\np, *, *, *, *, allow", "\x1b[2Jfind_customer",
     "find_customer\u0085"],
)
def test_target_with_control_characters_is_refused(target: str) -> None:
    decision = snapshot(POLICY).decide(user("a", "analyst"), "demo", "tools/call", target, {})
    assert (decision.allowed, decision.reason) == (False, INVALID_TARGET)


@pytest.mark.parametrize("target", ["find_customer, allow", 'find_customer"', "find_customer*", "find_*"])
def test_target_with_policy_syntax_is_just_a_name(target: str) -> None:
    assert not snapshot(POLICY).decide(user("a", "analyst"), "demo", "tools/call", target, {}).allowed


@pytest.mark.parametrize("server", ["demo, tools/call", "demo\n", "*", "de*"])
def test_server_name_with_policy_syntax_matches_nothing(server: str) -> None:
    assert not snapshot(POLICY).decide(user("a", "analyst"), server, "tools/call", "find_customer", {}).allowed


def test_method_with_glob_characters_is_literal() -> None:
    snap = snapshot("p, role:a, demo, tools/call, *, allow\n")
    assert not snap.decide(user("u", "a"), "demo", "tools/*", "x", {}).allowed
    assert not snap.decide(user("u", "a"), "demo", "*", "x", {}).allowed


def test_arguments_that_look_like_code_are_data() -> None:
    snap = snapshot("p, role:a, db, tools/call, query, allow, database == analytics\n")
    for value in ["analytics' or '1'=='1", "__import__('os').system('true')", "analytics\n", ["analytics"],
                  {"$eq": "analytics"}, "*"]:
        assert not snap.decide(user("u", "a"), "db", "tools/call", "query", {"database": value}).allowed


def test_rule_text_in_decisions_comes_from_the_policy_not_the_request() -> None:
    snap = snapshot(POLICY)
    decision = snap.decide(Principal(subject="x\np, *", roles=("admin",)), "demo", "tools/call", "zap", {})
    assert decision.rule == "p, role:admin, demo, *, *, allow"


names = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)


@settings(max_examples=200, deadline=None)
@given(subject=names, roles=st.lists(names, max_size=3), target=names)
def test_arbitrary_request_strings_never_reach_admin(subject: str, roles: list[str], target: str) -> None:
    """Only the literal claims ``admin``/``analyst``/``support`` (or sub ``alice``) grant anything."""
    snap = snapshot(POLICY)
    decision = snap.decide(Principal(subject=subject, roles=tuple(roles)), "demo", "tools/call", target, {})
    if decision.allowed:
        assert set(roles) & {"admin", "analyst", "support"}


def test_casbin_reference_agrees_on_injection_attempts() -> None:
    snap = snapshot(POLICY)
    enforcer = build_enforcer(snap)
    for subject in INJECTED_SUBJECTS:
        principal = Principal(subject=subject, roles=("x\np, *, *, *, *, allow",))
        assert casbin_decide(enforcer, principal, "demo", "tools/call", "delete_customer", {})[0] is False

"""Decision tables for the indexed engine: allow, deny, deny-overrides, default deny, roles, globs, args."""

from __future__ import annotations

from typing import Any

import pytest

from guard.context import ANONYMOUS, Principal
from guard.policy.engine import (
    ALLOWED,
    ANY_ARGUMENTS,
    DEFAULT_DENY,
    EXPLICIT_DENY,
    INVALID_TARGET,
    UNDECIDABLE_DENY,
    Authorizer,
    Snapshot,
)
from guard.policy.rules import parse_policy_text
from guard.policy.store import PolicyLoadError
from tests.policy.conftest import snapshot, user

POLICY = """
g, role:support, role:analyst
g, role:admin, role:support
g, user:ops, role:support
p, role:analyst, demo, tools/call, find_*, allow
p, role:analyst, demo, tools/call, list_customers, allow
p, role:analyst, demo, resources/read, customers://*, allow
p, role:support, demo, tools/call, send_message, allow, to glob *@example.com
p, role:support, demo, tools/call, find_secret, deny
p, role:admin, demo, *, *, allow
p, *, demo, tools/call, delete_customer, deny, customer_id == C001
p, user:eve, *, tools/call, *, allow
p, user:eve, other, tools/call, wipe, deny
p, anonymous, demo, tools/list, *, allow
p, role:analyst, db, tools/call, query, allow, database == analytics
p, role:reader, files, tools/call, read_file, allow, path under /srv/public/
p, role:reader, files, resources/read, file:///srv/public/**, allow
"""

CASES: list[tuple[str, Principal, str, str, str | None, Any, bool, str]] = [
    # (name, principal, server, method, target, arguments, allowed, reason)
    ("allow by role", user("a", "analyst"), "demo", "tools/call", "find_customer", {}, True, ALLOWED),
    ("allow by exact name", user("a", "analyst"), "demo", "tools/call", "list_customers", None, True, ALLOWED),
    ("default deny: no rule for tool", user("a", "analyst"), "demo", "tools/call", "send_message", {}, False,
     DEFAULT_DENY),
    ("default deny: no roles", user("a"), "demo", "tools/call", "find_customer", {}, False, DEFAULT_DENY),
    ("default deny: other server", user("a", "analyst"), "other", "tools/call", "find_customer", {}, False,
     DEFAULT_DENY),
    ("default deny: other method", user("a", "analyst"), "demo", "prompts/get", "find_customer", {}, False,
     DEFAULT_DENY),
    ("explicit deny", user("b", "support"), "demo", "tools/call", "find_secret", {}, False, EXPLICIT_DENY),
    ("deny overrides a glob allow", user("b", "analyst", "support"), "demo", "tools/call", "find_secret", {},
     False, EXPLICIT_DENY),
    ("deny overrides allow-all", user("r", "admin"), "demo", "tools/call", "find_secret", {}, False,
     EXPLICIT_DENY),
    ("conditional deny applies", user("r", "admin"), "demo", "tools/call", "delete_customer",
     {"customer_id": "C001"}, False, EXPLICIT_DENY),
    ("conditional deny does not apply", user("r", "admin"), "demo", "tools/call", "delete_customer",
     {"customer_id": "C002"}, True, ALLOWED),
    ("conditional deny applies when undecidable: missing", user("r", "admin"), "demo", "tools/call",
     "delete_customer", {}, False, UNDECIDABLE_DENY),
    ("conditional deny applies when undecidable: a list", user("r", "admin"), "demo", "tools/call",
     "delete_customer", {"customer_id": ["C002"]}, False, UNDECIDABLE_DENY),
    ("conditional allow does not apply when undecidable", user("b", "support"), "demo", "tools/call",
     "send_message", {"to": ["x@example.com"]}, False, DEFAULT_DENY),
    ("role inheritance two levels", user("r", "admin"), "demo", "tools/call", "list_customers", {}, True, ALLOWED),
    ("user granted a role by g line", user("ops"), "demo", "tools/call", "find_customer", {}, True, ALLOWED),
    ("user rule", user("eve"), "anything", "tools/call", "whatever", {}, True, ALLOWED),
    ("user deny beats user allow", user("eve"), "other", "tools/call", "wipe", {}, False, EXPLICIT_DENY),
    ("user rule is not another user's", user("eve2"), "other", "tools/call", "x", {}, False, DEFAULT_DENY),
    ("anonymous", ANONYMOUS, "demo", "tools/list", None, None, True, ALLOWED),
    ("anonymous is not user:anonymous", user("anonymous"), "demo", "tools/list", None, None, False, DEFAULT_DENY),
    ("glob anchored at end", user("a", "analyst"), "demo", "tools/call", "xfind_customer", {}, False,
     DEFAULT_DENY),
    ("uri glob one segment", user("a", "analyst"), "demo", "resources/read", "customers://C001", None, True,
     ALLOWED),
    ("uri glob does not cross /", user("a", "analyst"), "demo", "resources/read", "customers://C001/x", None,
     False, DEFAULT_DENY),
    ("argument allowed", user("b", "support"), "demo", "tools/call", "send_message",
     {"to": "x@example.com", "body": "hi"}, True, ALLOWED),
    ("argument not allowed", user("b", "support"), "demo", "tools/call", "send_message",
     {"to": "x@evil.test"}, False, DEFAULT_DENY),
    ("argument missing", user("b", "support"), "demo", "tools/call", "send_message", {}, False, DEFAULT_DENY),
    ("arguments not an object", user("b", "support"), "demo", "tools/call", "send_message", None, False,
     DEFAULT_DENY),
    ("database == analytics", user("a", "analyst"), "db", "tools/call", "query", {"database": "analytics"}, True,
     ALLOWED),
    ("database == prod", user("a", "analyst"), "db", "tools/call", "query", {"database": "prod"}, False,
     DEFAULT_DENY),
    ("read_file under public", user("d", "reader"), "files", "tools/call", "read_file",
     {"path": "/srv/public/a.txt"}, True, ALLOWED),
    ("read_file path traversal", user("d", "reader"), "files", "tools/call", "read_file",
     {"path": "/srv/public/../secret"}, False, DEFAULT_DENY),
    ("read_file encoded traversal", user("d", "reader"), "files", "tools/call", "read_file",
     {"path": "file:///srv/public/%2e%2e/secret"}, False, DEFAULT_DENY),
    ("resource uri traversal", user("d", "reader"), "files", "resources/read", "file:///srv/public/../secret",
     None, False, INVALID_TARGET),
    ("resource uri encoded traversal", user("d", "reader"), "files", "resources/read",
     "file:///srv/public/%2E%2E/secret", None, False, INVALID_TARGET),
    ("resource uri encoded slash traversal refused", user("d", "reader"), "files", "resources/read",
     "file:///srv/public/..%2F..%2Fetc/passwd", None, False, INVALID_TARGET),
    ("resource uri double-encoded traversal refused", user("d", "reader"), "files", "resources/read",
     "file:///srv/public/%252e%252e/etc/passwd", None, False, INVALID_TARGET),
    ("resource uri backslash traversal refused", user("d", "reader"), "files", "resources/read",
     "file:///srv/public/..\\etc", None, False, INVALID_TARGET),
    ("resource uri encoded NUL refused", user("d", "reader"), "files", "resources/read",
     "file:///srv/public/a%00.txt", None, False, INVALID_TARGET),
    ("resource uri with dot segments is refused even when they stay inside", user("d", "reader"), "files",
     "resources/read", "file:///srv/public/a/../b.txt", None, False, INVALID_TARGET),
    ("resource uri with dots inside names is fine", user("d", "reader"), "files", "resources/read",
     "file:///srv/public/a..b/.c.txt", None, True, ALLOWED),
    ("builtin initialize", user("nobody"), "demo", "initialize", None, None, True, ALLOWED),
    ("builtin ping", ANONYMOUS, "x", "ping", None, None, True, ALLOWED),
    ("builtin notification", user("nobody"), "demo", "notifications/cancelled", None, None, True, ALLOWED),
    ("builtin client response", user("nobody"), "demo", "response/sampling/createMessage", None, None, True,
     ALLOWED),
    ("not builtin: sampling", user("nobody"), "demo", "sampling/createMessage", None, {}, False, DEFAULT_DENY),
    ("not builtin: notifications/message", user("nobody"), "demo", "notifications/message", None, None, False,
     DEFAULT_DENY),
    ("control character in target", user("r", "admin"), "demo", "tools/call", "find_customer\n", {}, False,
     INVALID_TARGET),
    ("overlong target", user("r", "admin"), "demo", "tools/call", "a" * 5000, {}, False, INVALID_TARGET),
]


@pytest.mark.parametrize(("name", "principal", "server", "method", "target", "args", "allowed", "reason"),
                         CASES, ids=[c[0] for c in CASES])
def test_decision_table(name: str, principal: Principal, server: str, method: str, target: str | None,
                        args: Any, allowed: bool, reason: str) -> None:
    decision = snapshot(POLICY).decide(principal, server, method, target, args)
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_decision_names_the_matched_rule() -> None:
    snap = snapshot(POLICY)
    assert snap.decide(user("a", "analyst"), "demo", "tools/call", "find_customer").rule == (
        "p, role:analyst, demo, tools/call, find_*, allow")
    assert snap.decide(user("r", "admin"), "demo", "tools/call", "delete_customer",
                       {"customer_id": "C001"}).rule == (
        "p, *, demo, tools/call, delete_customer, deny, customer_id == C001")
    assert snap.decide(user("n"), "demo", "ping", None).rule == "builtin: p, *, *, ping, *, allow"
    assert snap.decide(user("n"), "demo", "tools/call", "x").rule is None


def test_first_matching_allow_in_file_order_is_reported() -> None:
    snap = snapshot("p, role:a, s, tools/call, *, allow\np, role:a, s, tools/call, t, allow\n")
    assert snap.decide(user("u", "a"), "s", "tools/call", "t").rule == "p, role:a, s, tools/call, *, allow"


def test_a_deny_can_override_builtin_plumbing() -> None:
    snap = snapshot("p, user:blocked, *, ping, *, deny\n")
    assert not snap.decide(user("blocked"), "demo", "ping", None).allowed
    assert snap.decide(user("other"), "demo", "ping", None).allowed


def test_listing_mode_counts_conditional_allows_but_not_conditional_denies() -> None:
    snap = snapshot(POLICY)
    support = user("b", "support")
    assert snap.decide(support, "demo", "tools/call", "send_message", ANY_ARGUMENTS).allowed
    assert snap.decide(user("r", "admin"), "demo", "tools/call", "delete_customer", ANY_ARGUMENTS).allowed
    assert not snap.decide(support, "demo", "tools/call", "find_secret", ANY_ARGUMENTS).allowed


def test_role_cycles_terminate() -> None:
    snap = snapshot("g, role:a, role:b\ng, role:b, role:a\np, role:b, s, tools/call, t, allow\n")
    assert snap.decide(user("u", "a"), "s", "tools/call", "t").allowed


def test_roles_come_from_the_principal_only_for_that_request() -> None:
    snap = snapshot(POLICY)
    assert snap.decide(user("x", "admin"), "demo", "tools/call", "anything").allowed
    assert not snap.decide(user("x"), "demo", "tools/call", "anything").allowed
    assert snap.links == parse_policy_text(POLICY).links  # nothing was added to the policy


def test_authorizer_check_is_the_pii_reveal_api() -> None:
    snap = snapshot("p, role:support, demo, pii/reveal, send_message/EMAIL_ADDRESS, allow\n")
    authz = Authorizer(snap)
    assert authz.check(user("b", "support"), "demo", "pii/reveal", "send_message/EMAIL_ADDRESS").allowed
    assert not authz.check(user("b", "support"), "demo", "pii/reveal", "send_message/PHONE_NUMBER").allowed
    assert not authz.check(user("b"), "demo", "pii/reveal", "send_message/EMAIL_ADDRESS").allowed


def test_evaluate_reports_matches_and_unmet_conditions() -> None:
    ev = snapshot(POLICY).evaluate(user("b", "support"), "demo", "tools/call", "send_message", {"to": "x@evil"})
    assert not ev.decision.allowed
    assert [r.text for r, _ in ev.unmet] == [
        "p, role:support, demo, tools/call, send_message, allow, to glob *@example.com"]
    assert ev.unmet[0][1] == ("to glob *@example.com",)
    assert "role:analyst" in ev.subjects


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("p, analyst, demo, tools/call, x, allow", "must be user:NAME"),
        ("p, role:, demo, tools/call, x, allow", "needs a name"),
        ("p, role:a, demo, tools/call, x, permit", "effect must be allow or deny"),
        ("p, role:a, demo, tools/call, x", "5 or 6 fields"),
        ("p, role:a, demo, tools/call, , allow", "empty pattern"),
        ("p, role:a, demo, tools/call, ^x.*$, allow", "regular expressions"),
        ("p, role:a, demo, tools/call, x, allow, a ~= b", "condition"),
        ("g, role:a", "2 fields"),
        ("g, role:a, analyst", "must be role:NAME"),
        ("g, *, role:a", "not allowed here"),
        ("q, role:a, demo, tools/call, x, allow", "unknown line type"),
        ('p, "role:a, demo, tools/call, x, allow', "unterminated"),
    ],
)
def test_bad_lines_make_the_policy_invalid(line: str, message: str) -> None:
    with pytest.raises(PolicyLoadError) as err:
        snapshot(f"p, role:ok, demo, tools/call, x, allow\n{line}\n")
    assert ":2: error:" in err.value.problems[0]
    assert message in err.value.problems[0]


def test_quoted_fields_and_comments() -> None:
    snap = snapshot('# comment\n\np, role:a, demo, tools/call, "odd,name", allow\r\n')
    assert snap.decide(user("u", "a"), "demo", "tools/call", "odd,name").allowed
    assert snap.decide(user("u", "a"), "demo", "tools/call", "odd,name").rule == (
        'p, role:a, demo, tools/call, "odd,name", allow')


def test_snapshot_refuses_a_policy_with_errors() -> None:
    with pytest.raises(ValueError):
        Snapshot(parse_policy_text("p, bad\n"))


def test_shipped_policy_loads(shipped: Snapshot) -> None:
    assert shipped.decide(user("a", "analyst"), "demo", "tools/call", "find_customer", {"query": "x"}).allowed
    assert shipped.decide(user("b", "support"), "demo", "pii/reveal", "send_message/EMAIL_ADDRESS").allowed


@pytest.mark.parametrize("variant", ["c001", " C001", "C001 ", ["C001"], ["C002", "C001"], {"id": "C001"}, 1, None])
def test_legal_hold_holds_for_case_and_whitespace_variants(shipped: Snapshot, variant: Any) -> None:
    """The shipped legal hold on C001 denies every spelling the demo server reads as C001, and every
    value it cannot judge (a list, an object, a number, null) -- admins included."""
    decision = shipped.decide(user("root", "admin"), "demo", "tools/call", "delete_customer", {"customer_id": variant})
    assert not decision.allowed
    assert decision.rule == "p, *, demo, tools/call, delete_customer, deny, customer_id ~== C001"
    assert shipped.decide(user("root", "admin"), "demo", "tools/call", "delete_customer",
                          {"customer_id": "C002"}).allowed


@pytest.mark.parametrize("limit", [5000, "5000", " 5000", "5e3", "1e400", "5_000", "0x2000", True, [5000], None])
def test_numeric_string_does_not_escape_a_numeric_deny(limit: Any) -> None:
    snap = snapshot("p, role:a, db, tools/call, query, allow\n"
                    "p, *, db, tools/call, query, deny, limit > 1000\n")
    assert not snap.decide(user("u", "a"), "db", "tools/call", "query", {"limit": limit}).allowed
    assert snap.decide(user("u", "a"), "db", "tools/call", "query", {"limit": "10"}).allowed


def test_one_extra_element_does_not_escape_an_any_deny() -> None:
    snap = snapshot("p, role:a, mail, tools/call, send, allow\n"
                    "p, *, mail, tools/call, send, deny, to[any] ~glob *@evil.example\n")
    assert not snap.decide(user("u", "a"), "mail", "tools/call", "send",
                           {"to": ["ok@example.com", "x@Evil.Example"]}).allowed
    assert snap.decide(user("u", "a"), "mail", "tools/call", "send", {"to": ["ok@example.com"]}).allowed


def test_star_quantifier_is_refused_in_a_deny_rule() -> None:
    """``[*]`` used to mean "every element", so one harmless extra element escaped a deny."""
    with pytest.raises(PolicyLoadError) as err:
        snapshot("p, *, mail, tools/call, send, deny, to[*] glob *@evil.example\n")
    assert "[*] is ambiguous in a deny rule" in err.value.problems[0]
    allow = snapshot("p, role:a, files, tools/call, copy, allow, paths[*] under /srv\n")
    assert allow.decide(user("u", "a"), "files", "tools/call", "copy", {"paths": ["/srv/a"]}).allowed
    assert not allow.decide(user("u", "a"), "files", "tools/call", "copy", {"paths": ["/srv/a", "/etc"]}).allowed


def test_evaluate_reports_undecidable_conditions() -> None:
    ev = snapshot(POLICY).evaluate(user("r", "admin"), "demo", "tools/call", "delete_customer", {})
    assert ev.decision.reason == UNDECIDABLE_DENY
    assert [r.text for r, _ in ev.undecided] == [
        "p, *, demo, tools/call, delete_customer, deny, customer_id == C001"]
    assert ev.undecided[0][1] == ("customer_id == C001 (undecidable)",)


def test_second_issuers_admin_role_does_not_match_first_issuers_rules() -> None:
    """Principals are namespaced by their issuer's alias: the partner IdP's 'alice' and 'admin' are
    user:partner/alice and role:partner/admin, which match only rules (or g lines) naming them."""
    snap = snapshot("p, role:admin, demo, *, *, allow\n"
                    "p, user:alice, demo, tools/call, echo, allow\n"
                    "p, role:analyst, demo, tools/call, find_customer, allow\n"
                    "g, role:partner/support, role:analyst\n"      # trust the partner's support role as analyst
                    "p, user:partner/bob, demo, tools/call, echo, allow\n")
    partner_alice = Principal("alice", ("admin", "support"), issuer="https://partner.test", namespace="partner")
    assert not snap.decide(partner_alice, "demo", "tools/call", "delete_customer", {}).allowed
    assert not snap.decide(partner_alice, "demo", "tools/call", "echo", {}).allowed
    assert snap.decide(partner_alice, "demo", "tools/call", "find_customer", {}).allowed  # via the g line
    assert snap.decide(Principal("bob", namespace="partner"), "demo", "tools/call", "echo", {}).allowed
    home_alice = Principal("alice", issuer="https://home.test")
    assert snap.decide(home_alice, "demo", "tools/call", "echo", {}).allowed
    assert snap.decide(Principal("root", ("admin",), issuer="https://home.test"), "demo", "tools/call",
                       "delete_customer", {}).allowed

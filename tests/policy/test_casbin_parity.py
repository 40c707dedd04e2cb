"""The indexed engine decides exactly as a real pycasbin Enforcer running the shipped model."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.context import Principal
from guard.policy.casbin_ref import build_enforcer, casbin_decide
from guard.policy.conditions import UNDECIDABLE
from guard.policy.model import MODEL_TEXT
from guard.policy.store import build_snapshot
from tests.policy.conftest import POLICIES

SUBJECTS = ["*", "user:a", "user:b", "role:x", "role:y", "role:z", "anonymous"]
SERVERS = ["demo", "other", "*", "d*", "**"]
ACTIONS = ["tools/call", "tools/*", "*", "resources/read", "ping", "notifications/**"]
OBJECTS = ["find_a", "find_*", "*", "f:///s/**", "f:///s/*", "x?", "find_a_b"]
CONDS = ["", "n == 1", "p under /s", "n in 1|2", "n != 1", "q absent", "n <= 1", "n ~== a", "n ~!= A",
         "l[any] == 1", "l[all] <= 1", "n > 1 && q absent", "p ~glob /S/*", "n == true"]

rule_lines = st.builds(
    lambda sub, srv, act, obj, eft, cond: ", ".join(["p", sub, srv, act, obj, eft] + ([cond] if cond else [])),
    st.sampled_from(SUBJECTS), st.sampled_from(SERVERS), st.sampled_from(ACTIONS), st.sampled_from(OBJECTS),
    st.sampled_from(["allow", "deny"]), st.sampled_from(CONDS),
)
link_lines = st.builds(lambda m, r: f"g, {m}, {r}", st.sampled_from(["user:a", "user:b", "role:x", "role:y"]),
                       st.sampled_from(["role:x", "role:y", "role:z"]))
requests = st.tuples(
    st.sampled_from([Principal("a"), Principal("b", ("x",)), Principal("c", ("y", "z")), Principal("a", ("z",)),
                     Principal("anonymous", anonymous=True)]),
    st.sampled_from(["demo", "other", "dx"]),
    st.sampled_from(["tools/call", "resources/read", "ping", "notifications/a/b", "tools/list"]),
    st.sampled_from(["find_a", "find_b", "x1", "f:///s/t", "f:///s/t/u", "f:///s/../t", "", "find_a_b"]),
    st.sampled_from([None, {}, {"n": 1}, {"n": 2}, {"n": "1"}, {"p": "/s/a"}, {"p": "/s/../a"}, {"q": 1},
                     {"n": ["1"]}, {"n": None}, {"n": " A "}, {"n": True}, {"n": UNDECIDABLE}, UNDECIDABLE,
                     {"l": [1, 2]}, {"l": [0, 1]}, {"l": []}, {"l": "1"}, {"l": [1, "x"]}, {"p": "rel"}]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(rule_lines, link_lines), max_size=14), st.lists(requests, min_size=1, max_size=12))
def test_engine_agrees_with_casbin_enforcer(lines: list[str], reqs: list[tuple[Any, ...]]) -> None:
    snap = build_snapshot(MODEL_TEXT, "\n".join(lines))
    enforcer = build_enforcer(snap)
    for principal, server, action, target, args in reqs:
        ours = snap.decide(principal, server, action, target, args)
        theirs, rule = casbin_decide(enforcer, principal, server, action, target, args)
        assert ours.allowed == theirs, (lines, principal, server, action, target, args, ours, rule)


def test_shipped_policy_agrees_with_casbin_on_its_example_cases() -> None:
    from guard.policy.cases import load_cases

    cases = load_cases(POLICIES / "policy_tests.toml")
    snap = build_snapshot((POLICIES / "model.conf").read_text(), (POLICIES / "policy.csv").read_text())
    enforcer = build_enforcer(snap)
    for case in cases.cases:
        if case.listing:
            continue
        ours = snap.decide(case.principal, case.server, case.method, case.target, case.arguments)
        theirs, _ = casbin_decide(enforcer, case.principal, case.server, case.method, case.target, case.arguments)
        assert ours.allowed == theirs, case.name


def test_casbin_alone_with_only_deny_effect_would_allow_unmatched_requests() -> None:
    """Why the model's effect is allow-and-deny: '!some(deny)' alone allows what no rule mentions."""
    naive_model = MODEL_TEXT.replace("e = some(where (p.eft == allow)) && !some(where (p.eft == deny))",
                                     "e = !some(where (p.eft == deny))")
    assert naive_model != MODEL_TEXT
    snap = build_snapshot(MODEL_TEXT, "p, role:x, demo, tools/call, a, allow\n")
    naive = build_enforcer(snap, model_text=naive_model)
    assert casbin_decide(naive, Principal("nobody"), "demo", "tools/call", "zzz", {})[0] is True
    assert casbin_decide(build_enforcer(snap), Principal("nobody"), "demo", "tools/call", "zzz", {})[0] is False
    assert snap.decide(Principal("nobody"), "demo", "tools/call", "zzz", {}).allowed is False

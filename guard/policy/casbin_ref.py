"""The same model and rules loaded into a real :class:`casbin.Enforcer` (reference implementation).

guard decides with the indexed :class:`~guard.policy.engine.Snapshot`; this module builds
the pycasbin enforcer for the identical model text and rules, with guard's matcher functions
registered, so ``guard policy explain`` can show Casbin's own verdict next to guard's and the
test-suite can check that both always agree. It is slow (pycasbin evaluates the matcher per
line), so it is never on the request path.

The request subject passed to Casbin is a :class:`RequestSubject` holding the caller's names;
``subjectMatch`` asks Casbin's role manager (built from the ``g`` lines) whether any of them
reaches the rule's subject. The token's roles are thus links for this request only: they are
never added to the enforcer's policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import casbin

from guard.context import Principal
from guard.policy.conditions import parse_condition
from guard.policy.engine import Snapshot, subject_names
from guard.policy.glob import compile_glob
from guard.policy.model import ANY_SUBJECT, MODEL_TEXT
from guard.policy.targets import canonical_target


@dataclass(frozen=True, slots=True)
class RequestSubject:
    """The ``r.sub`` value: the caller's names (``user:<sub>`` / ``anonymous`` and ``role:<r>``)."""

    names: tuple[str, ...]

    def __str__(self) -> str:  # pycasbin logs requests with str(); keep it free of claims
        return "RequestSubject(...)"


def _glob_match(value: Any, pattern: Any) -> bool:
    return isinstance(value, str) and isinstance(pattern, str) and compile_glob(pattern).match(value)


def _args_match(arguments: Any, cond: Any) -> bool:
    condition = parse_condition(cond if isinstance(cond, str) else "")
    return condition is None or condition.holds(arguments)


def build_enforcer(snapshot: Snapshot, model_text: str | None = None) -> casbin.Enforcer:
    """A pycasbin enforcer holding the snapshot's model, rules (built-ins included) and links."""
    logging.getLogger("casbin").setLevel(logging.ERROR)
    model = casbin.Enforcer.new_model(text=model_text or snapshot.model_text or MODEL_TEXT)
    enforcer = casbin.Enforcer(model)
    role_manager = enforcer.get_role_manager()

    def subject_match(subject: Any, pattern: Any) -> bool:
        if pattern == ANY_SUBJECT:
            return True
        if not isinstance(subject, RequestSubject):
            return False
        return any(name == pattern or role_manager.has_link(name, pattern) for name in subject.names)

    enforcer.add_function("subjectMatch", subject_match)
    enforcer.add_function("globMatch", _glob_match)
    enforcer.add_function("argsMatch", _args_match)
    seen: set[tuple[str, ...]] = set()
    rules = []
    for rule in snapshot.rules:
        if rule.fields not in seen:
            seen.add(rule.fields)
            rules.append(list(rule.fields))
    if rules:
        enforcer.add_named_policies("p", rules)
    links = sorted({(link.member, link.role) for link in snapshot.links})
    if links:
        enforcer.add_named_grouping_policies("g", [list(pair) for pair in links])
    enforcer.build_role_links()
    return enforcer


def casbin_decide(enforcer: casbin.Enforcer, principal: Principal, server: str, action: str,
                  target: str | None, arguments: Any = None) -> tuple[bool, list[str]]:
    """Casbin's verdict and the rule it reports. Targets are canonicalized as guard does."""
    obj = canonical_target(target or "")
    if obj is None:
        return False, []
    allowed, rule = enforcer.enforce_ex(RequestSubject(subject_names(principal)), server, action, obj,
                                        arguments)
    return bool(allowed), list(rule)

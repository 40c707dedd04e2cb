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

``argsMatch(r.args, p.cond, p.eft)`` is a second, deliberately separate implementation of the
condition semantics of :mod:`guard.policy.conditions` (a reference twin, STYLE rule 16): it
re-parses the condition text with its own regular expression and evaluates it in a
different formulation of three-valued logic (truth values ordered false < undecidable < true,
so "and" is ``min``, "or" is ``max``, "not" is ``2 - x``). Only the leaf primitives with
their own test tables are shared: glob matching and lexical path normalization. The
test-suite compares the two on generated policies and arguments, so a change to one that the
other does not mirror fails.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import casbin

from guard.context import Principal
from guard.policy.conditions import MISSING, UNDECIDABLE, normalize_path
from guard.policy.engine import Snapshot, subject_names
from guard.policy.glob import compile_glob
from guard.policy.model import ANY_SUBJECT, MODEL_TEXT
from guard.policy.targets import check_target


@dataclass(frozen=True, slots=True)
class RequestSubject:
    """The ``r.sub`` value: the caller's names (``user:<sub>`` / ``anonymous`` and ``role:<r>``)."""

    names: tuple[str, ...]

    def __str__(self) -> str:  # pycasbin logs requests with str(); keep it free of claims
        return "RequestSubject(...)"


def _glob_match(value: Any, pattern: Any) -> bool:
    return isinstance(value, str) and isinstance(pattern, str) and compile_glob(pattern).match(value)


# -- the reference twin of guard.policy.conditions -------------------------------------------

_F, _U, _T = 0, 1, 2
"""false < undecidable < true: conjunction is min, disjunction max, negation 2 - x."""
_CLAUSE = re.compile(
    r"\s*(?P<path>[A-Za-z0-9_.\[\]*-]+?)\s*"
    r"(?P<op>~not in(?=\s)|~glob(?=\s)|~in(?=\s)|~==|~!=|not in(?=\s)|in(?=\s)|glob(?=\s)|under(?=\s)"
    r"|exists(?=\s|$)|absent(?=\s|$)|==|!=|<=|>=|<|>)\s*(?P<value>.*?)\s*"
)
_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?", re.ASCII)


def _ref_number(value: Any) -> Any:
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return value
    if type(value) is str and len(value) <= 400:
        stripped = value.strip(" \t\r\n")
        if _NUMBER.fullmatch(stripped):
            return Decimal(stripped)
    return None


def _ref_fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not (c.isspace() or unicodedata.category(c) == "Cf"))


def _ref_equal(value: Any, literal: str, folded: bool) -> int:
    if value is MISSING or value is UNDECIDABLE or type(value) in (list, dict):
        return _U
    if literal == "null":
        return _T if value is None else _F
    if value is None:
        return _U
    if _NUMBER.fullmatch(literal):
        number = _ref_number(value)
        return _U if number is None else (_T if number == Decimal(literal) else _F)
    if literal in ("true", "false"):
        if type(value) is bool:
            return _T if value == (literal == "true") else _F
        text = (_ref_fold(value) if folded else value) if type(value) is str else None
        return _U if text not in ("true", "false") else (_T if text == literal else _F)
    if type(value) is not str:
        return _U
    if folded:
        return _T if _ref_fold(value) == _ref_fold(literal) else _F
    return _T if value == literal else _F


def _ref_leaf(op: str, literal: str, value: Any) -> int:
    if value is UNDECIDABLE:
        return _U
    if op == "exists":
        return _F if value is MISSING else _T
    if op == "absent":
        return _T if value is MISSING else _F
    folded = op[0] == "~"
    bare = op.lstrip("~")
    if bare == "==":
        return _ref_equal(value, literal, folded)
    if bare == "!=":
        return 2 - _ref_equal(value, literal, folded)
    if bare in ("in", "not in"):
        found = max((_ref_equal(value, option.strip(), folded) for option in literal.split("|")), default=_F)
        return found if bare == "in" else 2 - found
    if type(value) is not str and bare in ("glob", "under"):
        return _U
    if bare == "glob":
        subject, pattern = (_ref_fold(value), _ref_fold(literal)) if folded else (value, literal)
        return _T if compile_glob(pattern).match(subject) else _F
    if bare == "under":
        try:
            path = normalize_path(value)
        except UnicodeDecodeError:
            return _U
        base = normalize_path(literal) or ""
        if path is None:
            return _U
        return _T if base == "/" or path == base or path.startswith(base + "/") else _F
    number = None if value is MISSING or type(value) in (list, dict) or value is None else _ref_number(value)
    if number is None:
        return _U
    bound = Decimal(literal)
    holds = {"<": number < bound, "<=": number <= bound, ">": number > bound, ">=": number >= bound}[bare]
    return _T if holds else _F


def _ref_walk(node: Any, names: list[str], op: str, literal: str) -> int:
    if not names:
        return _ref_leaf(op, literal, node)
    if node is UNDECIDABLE:
        return _U
    head, rest = names[0], names[1:]
    name, _, bracket = head.partition("[")
    if type(node) is dict:
        child = node[name] if name in node else MISSING
    elif node is None or node is MISSING:
        child = MISSING
    else:
        return _U
    if not bracket:
        return _ref_walk(child, rest, op, literal)
    if type(child) is not list:
        return _U
    results = [_ref_walk(element, rest, op, literal) for element in child]
    if bracket == "any]":
        return max(results, default=_F)
    return min(results, default=_T)


def ref_evaluate(arguments: Any, cond: str) -> bool | None:
    """The reference value of condition ``cond`` (already accepted by guard's parser)."""
    truth = _T
    for clause in cond.split("&&"):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise ValueError(f"reference parser cannot read {clause!r}")
        truth = min(truth, _ref_walk(arguments, match["path"].split("."), match["op"], match["value"]))
    return {_F: False, _U: None, _T: True}[truth]


def _args_match(arguments: Any, cond: Any, effect: Any = "allow") -> bool:
    text = cond.strip() if isinstance(cond, str) else ""
    if not text:
        return True
    truth = ref_evaluate(arguments, text)
    return truth is True or (truth is None and effect == "deny")


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
    """Casbin's verdict and the rule it reports. Targets are checked as guard checks them."""
    obj = check_target(target or "")
    if obj is None:
        return False, []
    allowed, rule = enforcer.enforce_ex(RequestSubject(subject_names(principal)), server, action, obj,
                                        arguments)
    return bool(allowed), list(rule)

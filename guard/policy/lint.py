"""``guard policy check``: find mistakes in a policy before it is deployed. No I/O.

Errors (the policy would not load): model problems, parse errors, bad globs or conditions.
Warnings (it loads, but probably does not say what its author meant):

* duplicate rules;
* unreachable rules -- an allow that an unconditional deny always overrides;
* shadowed rules -- a rule another unconditional rule with the same effect already covers;
* unknown actions -- a method no MCP revision or guard defines (``tool/call`` for ``tools/call``);
* unanchored-looking patterns -- ``read_file*`` also matches ``read_file_backup``; text that
  looks like a regular expression (``.*``, ``(a|b)``) is matched literally;
* roles with no permissions, roles never granted (with ``known_roles``), cycles in ``g`` links;
* servers that are not configured (with ``servers``);
* deny conditions that compare exact text (``==``, ``in``, ``glob`` on a text value): a server
  that trims or changes case lets ``" c001"`` past ``deny, id == C001``; the ``~`` operators
  compare normalized text;
* allow conditions that compare normalized text (``~==``, ``~in``, ``~glob``): they also admit
  variants the server may read as a different value;
* the legacy ``[*]`` quantifier in allow rules (write ``[all]``).

"Covers" is decided conservatively (:func:`guard.policy.glob.covers`): a warning is only
given when the shadowing is certain.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from guard.policy.glob import Glob, covers
from guard.policy.model import (
    ANY_SUBJECT,
    KNOWN_ACTIONS,
    ROLE_PREFIX,
    USER_PREFIX,
    ModelError,
    validate_model,
)
from guard.policy.rules import BUILTIN_SOURCE, Link, ParsedPolicy, PolicyProblem, Rule, parse_policy_text

_EXACT_POSITIVE = frozenset({"==", "in", "glob"})
_FOLDED_POSITIVE = frozenset({"~==", "~in", "~glob"})
_REGEX_HINT = re.compile(r"\.\*|\.\+|[()|+$\\]|\[\^")
_WORDY = re.compile(r"[A-Za-z0-9]")


@dataclass(frozen=True)
class CheckReport:
    problems: tuple[PolicyProblem, ...]
    rules: int
    links: int

    @property
    def errors(self) -> list[PolicyProblem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[PolicyProblem]:
        return [p for p in self.problems if p.severity == "warning"]


class _Checker:
    def __init__(self, parsed: ParsedPolicy, source: str) -> None:
        self.source = source
        self.rules = [r for r in parsed.rules if r.source != BUILTIN_SOURCE]
        self.all_rules = list(parsed.rules)
        self.links = list(parsed.links)
        self.problems: list[PolicyProblem] = []
        self.parents: dict[str, set[str]] = {}
        for link in self.links:
            self.parents.setdefault(link.member, set()).add(link.role)
        self.by_key: dict[tuple[str | None, str | None, str], list[Rule]] = {}
        for rule in self.all_rules:
            key = (_lit(rule.server), _lit(rule.action), rule.subject)
            self.by_key.setdefault(key, []).append(rule)

    def warn(self, line: int, message: str) -> None:
        self.problems.append(PolicyProblem(self.source, line, message, "warning"))

    def expand(self, name: str) -> set[str]:
        seen: set[str] = set()
        stack = [name]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            stack.extend(self.parents.get(current, ()))
        return seen

    # -- individual checks -----------------------------------------------------------------

    def duplicates(self) -> set[int]:
        first: dict[tuple[str, ...], Rule] = {}
        dup: set[int] = set()
        for rule in self.rules:
            earlier = first.setdefault(rule.fields, rule)
            if earlier is not rule:
                dup.add(rule.order)
                self.warn(rule.line, f"duplicate of line {earlier.line}")
        return dup

    def covering(self, rule: Rule) -> Iterable[Rule]:
        """Rules whose subject, server, method and target each cover ``rule``'s."""
        subjects = self.expand(rule.subject) | {ANY_SUBJECT} if rule.subject != ANY_SUBJECT else {ANY_SUBJECT}
        servers = {_lit(rule.server), None} if rule.server.is_literal else {None}
        actions = {_lit(rule.action), None} if rule.action.is_literal else {None}
        for srv in servers:
            for act in actions:
                for sub in subjects:
                    for other in self.by_key.get((srv, act, sub), ()):
                        if other is rule:
                            continue
                        if covers(other.server, rule.server) and covers(other.action, rule.action) and covers(
                                other.obj, rule.obj):
                            yield other

    def shadowing(self, skip: set[int]) -> None:
        for rule in self.rules:
            if rule.order in skip:
                continue
            covering = [o for o in self.covering(rule) if o.cond is None]
            denier = next((o for o in covering if rule.allow and not o.allow), None)
            if denier is not None:
                self.warn(rule.line, f"unreachable: every request it allows is denied by "
                                     f"{denier.location} ({denier.text})")
                continue
            for other in covering:
                if rule.allow == other.allow and other.fields != rule.fields:
                    mutual = any(o is rule for o in self.covering(other)) and rule.cond is None
                    if mutual and other.order > rule.order:
                        continue  # equivalent rules: report only the later one
                    what = "allows" if rule.allow else "denies"
                    self.warn(rule.line, f"shadowed: {other.location} already {what} everything this rule "
                                         f"{what} ({other.text})")
                    break

    def actions(self) -> None:
        for rule in self.rules:
            pattern = rule.action
            if pattern.is_any:
                continue
            if pattern.is_literal:
                if pattern.text not in KNOWN_ACTIONS and not pattern.text.startswith(
                        ("tasks/", "notifications/")):
                    self.warn(rule.line, f"unknown action {pattern.text!r} (not an MCP method, "
                                         "response/<method> or pii/reveal)")
            elif not any(pattern.match(action) for action in KNOWN_ACTIONS):
                self.warn(rule.line, f"action pattern {pattern.text!r} matches no known action")

    def patterns(self) -> None:
        for rule in self.rules:
            for name, pattern in (("server", rule.server), ("method", rule.action), ("target", rule.obj)):
                text = pattern.text
                if pattern.is_any or (pattern.is_literal and not _REGEX_HINT.search(text)):
                    continue
                if _REGEX_HINT.search(text):
                    self.warn(rule.line, f"{name} {text!r} looks like a regular expression; guard patterns "
                                         "are anchored globs and these characters match literally")
                    continue
                if name == "method":
                    continue
                body = text.rstrip("*?")
                if body != text and body and _WORDY.match(body[-1]):
                    self.warn(rule.line, f"{name} {text!r} also matches names that merely start with "
                                         f"{body!r} (e.g. {body}_backup); end with a separator before the "
                                         "wildcard or list the names")
                head = text.lstrip("*?")
                if head != text and head and _WORDY.match(head[0]):
                    self.warn(rule.line, f"{name} {text!r} also matches names that merely end with "
                                         f"{head!r}; prefer a prefix or exact names")

    def roles(self, known_roles: Collection[str] | None) -> None:
        roles: dict[str, int] = {}
        for rule in self.rules:
            if rule.subject.startswith(ROLE_PREFIX):
                roles.setdefault(rule.subject, rule.line)
        for link in self.links:
            roles.setdefault(link.role, link.line)
            if link.member.startswith(ROLE_PREFIX):
                roles.setdefault(link.member, link.line)
        rule_subjects = {r.subject for r in self.rules}
        for role, line in sorted(roles.items(), key=lambda kv: kv[1]):
            if not (self.expand(role) & rule_subjects):
                self.warn(line, f"{role} has no rules (directly or through g links): holding it changes nothing")
        for link in self.links:
            if link.role in self.expand(link.role) - {link.role} or link.member in self.expand(link.role):
                self.warn(link.line, f"role cycle through {link.member} and {link.role}")
        if known_roles is None:
            return
        granted: set[str] = set()
        for name in [*(ROLE_PREFIX + r for r in known_roles), *(lk.member for lk in self.links
                                                                if lk.member.startswith(USER_PREFIX))]:
            granted |= self.expand(name)
        for role, line in sorted(roles.items(), key=lambda kv: kv[1]):
            if role not in granted:
                self.warn(line, f"{role} is never granted: no known token role and no g line leads to it")

    def conditions(self) -> None:
        for rule in self.rules:
            if rule.cond is None:
                continue
            if rule.cond.uses_star:
                self.warn(rule.line, "[*] is the legacy spelling of [all]; write [all] (or [any]) to say which")
            for clause in rule.cond.clauses:
                if rule.allow or clause.op not in _EXACT_POSITIVE:
                    continue
                if any(literal.kind == "text" for literal in clause.literals):
                    self.warn(rule.line, f"deny condition {clause.text!r} compares exact text: a server that "
                                         "trims or changes case lets variants through (' c001' for C001); use "
                                         f"~{clause.op} to compare normalized text")
            for clause in rule.cond.clauses:
                if rule.allow and clause.op in _FOLDED_POSITIVE:
                    self.warn(rule.line, f"allow condition {clause.text!r} compares normalized text: it also "
                                         "allows variants (case, spaces) the server may read as another value; "
                                         f"prefer {clause.op[1:]} in allow rules")

    def servers(self, servers: Collection[str] | None) -> None:
        if servers is None:
            return
        for rule in self.rules:
            if rule.server.is_any:
                continue
            if not any(rule.server.match(s) for s in servers):
                self.warn(rule.line, f"server {rule.server.text!r} matches no configured upstream "
                                     f"({', '.join(sorted(servers)) or 'none'})")


def _lit(glob: Glob) -> str | None:
    return glob.text if glob.is_literal else None


def check_texts(model_text: str | None, policy_text: str, *, policy_name: str = "policy.csv",
                model_name: str = "model.conf", servers: Collection[str] | None = None,
                known_roles: Collection[str] | None = None) -> CheckReport:
    """Check a model (``None``: the built-in one) and a policy; every problem, errors first."""
    problems: list[PolicyProblem] = []
    if model_text is not None:
        try:
            validate_model(model_text)
        except ModelError as exc:
            problems.append(PolicyProblem(model_name, 0, str(exc)))
    parsed = parse_policy_text(policy_text, policy_name)
    problems.extend(parsed.problems)
    checker = _Checker(parsed, policy_name)
    skip = checker.duplicates()
    checker.shadowing(skip)
    checker.actions()
    checker.patterns()
    checker.roles(known_roles)
    checker.conditions()
    checker.servers(servers)
    problems.extend(checker.problems)
    problems.sort(key=lambda p: (p.severity != "error", p.source, p.line))
    return CheckReport(tuple(problems), len(checker.rules), len(parsed.links))


__all__ = ["CheckReport", "Link", "check_texts"]

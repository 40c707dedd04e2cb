"""Evaluate the Casbin model of :mod:`guard.policy.model` fast: an immutable indexed snapshot.

pycasbin evaluates the matcher expression once per policy line (about 5 ms per decision at
1,000 lines). A :class:`Snapshot` instead indexes rules by ``(server, method)`` -- exact
values, or "wildcard" for patterns -- then by subject, then by exact target, so a decision
only looks at the handful of rules that could match. Semantics are exactly the model's
(the test-suite compares against a real ``casbin.Enforcer`` on random policies):

* a rule matches when its subject is ``*`` or one of the caller's names (``user:<sub>``,
  ``role:<r>`` for each token role, plus every role reachable through ``g`` links), its
  server/method/target globs match, and its condition lets it apply to the arguments:
  an ``allow`` rule needs its condition to be *true*; a ``deny`` rule applies unless its
  condition is *false* -- an undecidable condition (missing argument, wrong type, a token
  that does not open; see :mod:`guard.policy.conditions`) denies;
* allowed iff some ``allow`` rule matches and no ``deny`` rule matches (default deny,
  deny overrides); the deciding rule is the first matching deny, else the first matching
  allow, in file order (built-ins first).

A snapshot never changes after construction, so a reload builds a new one and swaps a single
reference (:mod:`guard.policy.store`); a decision in flight keeps the snapshot it started with.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from guard.context import Decision, Principal
from guard.policy.model import ANONYMOUS_SUBJECT, ANY_SUBJECT, ROLE_PREFIX, USER_PREFIX
from guard.policy.rules import Link, ParsedPolicy, Rule
from guard.policy.targets import check_target

ALLOWED: Final = "allowed"
EXPLICIT_DENY: Final = "explicit_deny"
UNDECIDABLE_DENY: Final = "undecidable_condition"
"""A deny rule applied because its condition could not be decided for these arguments."""
DEFAULT_DENY: Final = "default_deny"
INVALID_TARGET: Final = "invalid_target"

_SUBJECT_CACHE_LIMIT: Final = 4096


class _AnyArguments:
    """Sentinel: "the arguments are not known yet" (list filtering).

    Conditional allow rules count as matching (the caller *may* use the item with suitable
    arguments); conditional deny rules do not (some arguments escape them). Unconditional
    rules behave as usual.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY_ARGUMENTS"


ANY_ARGUMENTS: Final = _AnyArguments()


def subject_names(principal: Principal) -> tuple[str, ...]:
    """The names a principal holds before ``g`` expansion: ``user:<sub>`` (or ``anonymous``) and roles.

    A principal of an issuer with an alias holds ``user:<alias>/<sub>`` and ``role:<alias>/<role>``
    instead, so one issuer's subjects and roles never match rules written for another's; a role
    from such an issuer counts as a plain ``role:<role>`` only where a ``g`` line says so
    (``g, role:partner/support, role:support``). Strings are used verbatim after the prefix: a
    subject ``alice, role:admin`` is the single name ``user:alice, role:admin`` and grants
    nothing extra (names are compared, never parsed).
    """
    if principal.anonymous:
        return (ANONYMOUS_SUBJECT, *(ROLE_PREFIX + role for role in principal.roles))
    space = principal.namespace + "/" if principal.namespace else ""
    return (USER_PREFIX + space + principal.subject, *(ROLE_PREFIX + space + role for role in principal.roles))


@dataclass(slots=True)
class _Bucket:
    exact: dict[str, list[Rule]] = field(default_factory=dict)
    patterns: list[Rule] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Everything behind one decision, for ``guard policy explain`` and tests."""

    decision: Decision
    subjects: frozenset[str]
    target: str | None
    matched: tuple[Rule, ...]
    """Rules whose subject, server, method, target and condition all matched."""
    unmet: tuple[tuple[Rule, tuple[str, ...]], ...]
    """Rules that did not apply because of their condition, with the clauses that were not true."""
    undecided: tuple[tuple[Rule, tuple[str, ...]], ...] = ()
    """Rules whose condition was undecidable (a deny among them applied; an allow did not)."""


class Snapshot:
    """One immutable, indexed policy. Build it fully, then publish it with one assignment."""

    def __init__(self, parsed: ParsedPolicy, *, model_text: str = "", model_digest: str = "",
                 policy_digest: str = "", loaded_at: float = 0.0) -> None:
        if not parsed.ok:
            raise ValueError("cannot build a snapshot from a policy with errors")
        self.rules: tuple[Rule, ...] = parsed.rules
        self.links: tuple[Link, ...] = parsed.links
        self.model_text = model_text
        self.model_digest = model_digest
        self.policy_digest = policy_digest
        self.loaded_at = loaded_at
        self._parents: dict[str, tuple[str, ...]] = {}
        parents: dict[str, list[str]] = {}
        for link in parsed.links:
            parents.setdefault(link.member, []).append(link.role)
        self._parents = {k: tuple(v) for k, v in parents.items()}
        self._index: dict[tuple[str | None, str | None], dict[str, _Bucket]] = {}
        for rule in parsed.rules:
            key = (rule.server.text if rule.server.is_literal else None,
                   rule.action.text if rule.action.is_literal else None)
            bucket = self._index.setdefault(key, {}).setdefault(rule.subject, _Bucket())
            if rule.obj.is_literal:
                bucket.exact.setdefault(rule.obj.text, []).append(rule)
            else:
                bucket.patterns.append(rule)
        self._keys = tuple(self._index)
        self._subjects: dict[tuple[str, ...], frozenset[str]] = {}

    # -- subjects ---------------------------------------------------------------------------

    def expand(self, names: Iterable[str]) -> frozenset[str]:
        """``names`` plus every role reachable through ``g`` links, plus ``*`` (cycle-safe)."""
        seen = {ANY_SUBJECT}
        queue = deque(names)
        while queue:
            name = queue.popleft()
            if name in seen:
                continue
            seen.add(name)
            queue.extend(self._parents.get(name, ()))
        return frozenset(seen)

    def subjects_for(self, principal: Principal) -> frozenset[str]:
        names = subject_names(principal)
        cached = self._subjects.get(names)
        if cached is None:
            cached = self.expand(names)
            if len(self._subjects) >= _SUBJECT_CACHE_LIMIT:
                self._subjects.clear()
            self._subjects[names] = cached
        return cached

    # -- matching ---------------------------------------------------------------------------

    def candidates(self, subjects: frozenset[str], server: str, action: str, target: str) -> list[Rule]:
        """Rules whose subject, server, method and target match (conditions not yet checked)."""
        found: list[Rule] = []
        index = self._index
        for key in ((server, action), (server, None), (None, action), (None, None)):
            by_subject = index.get(key)
            if by_subject is None:
                continue
            check_server = key[0] is None
            check_action = key[1] is None
            for subject in subjects:
                bucket = by_subject.get(subject)
                if bucket is None:
                    continue
                exact = bucket.exact.get(target)
                if exact:
                    for rule in exact:
                        if (not check_server or rule.server.match(server)) and (
                                not check_action or rule.action.match(action)):
                            found.append(rule)
                for rule in bucket.patterns:
                    if (rule.obj.match(target) and (not check_server or rule.server.match(server))
                            and (not check_action or rule.action.match(action))):
                        found.append(rule)
        return found

    def decide(self, principal: Principal, server: str, action: str, target: str | None,
               arguments: Any = None) -> Decision:
        """The decision for one request. ``arguments`` may be :data:`ANY_ARGUMENTS`."""
        obj = check_target(target or "")
        if obj is None:
            return Decision(False, INVALID_TARGET)
        candidates = self.candidates(self.subjects_for(principal), server, action, obj)
        if not candidates:
            return Decision(False, DEFAULT_DENY)
        any_args = arguments is ANY_ARGUMENTS
        deny: Rule | None = None
        deny_reason = EXPLICIT_DENY
        allow: Rule | None = None
        for rule in candidates:
            if rule.allow:
                if allow is not None and allow.order < rule.order:
                    continue
                if rule.cond is None or any_args or rule.cond.evaluate(arguments) is True:
                    allow = rule
            else:
                if deny is not None and deny.order < rule.order:
                    continue
                if rule.cond is None:
                    deny, deny_reason = rule, EXPLICIT_DENY
                elif not any_args:
                    truth = rule.cond.evaluate(arguments)
                    if truth is not False:
                        deny, deny_reason = rule, EXPLICIT_DENY if truth else UNDECIDABLE_DENY
        if deny is not None:
            return Decision(False, deny_reason, deny.described)
        if allow is not None:
            return Decision(True, ALLOWED, allow.described)
        return Decision(False, DEFAULT_DENY)

    def evaluate(self, principal: Principal, server: str, action: str, target: str | None,
                 arguments: Any = None) -> Evaluation:
        """Like :meth:`decide`, but keep every rule involved (slower; for explain and tests)."""
        decision = self.decide(principal, server, action, target, arguments)
        subjects = self.subjects_for(principal)
        obj = check_target(target or "")
        if obj is None:
            return Evaluation(decision, subjects, None, (), ())
        matched: list[Rule] = []
        unmet: list[tuple[Rule, tuple[str, ...]]] = []
        any_args = arguments is ANY_ARGUMENTS
        undecided: list[tuple[Rule, tuple[str, ...]]] = []
        for rule in sorted(self.candidates(subjects, server, action, obj), key=lambda r: r.order):
            if rule.cond is None or (any_args and rule.allow):
                matched.append(rule)
                continue
            if any_args:
                unmet.append((rule, ("arguments unknown",)))
                continue
            truth = rule.cond.evaluate(arguments)
            if truth is None:
                undecided.append((rule, tuple(rule.cond.failing(arguments))))
            if truth is True or (truth is None and not rule.allow):
                matched.append(rule)
            else:
                unmet.append((rule, tuple(rule.cond.failing(arguments))))
        return Evaluation(decision, subjects, obj, tuple(matched), tuple(unmet), tuple(undecided))

    @property
    def size(self) -> int:
        """Number of rules, built-ins included."""
        return len(self.rules)


class SnapshotSource(Protocol):
    """Anything that hands out the current snapshot (a :class:`~guard.policy.store.PolicyStore`)."""

    @property
    def snapshot(self) -> Snapshot: ...


class StaticSource:
    """A fixed snapshot (tests, CLI)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot


class Authorizer:
    """The authorization API other stages call (PII reveal checks among them).

    Every call reads the current snapshot once, so a concurrent reload never yields a
    decision mixing two policies.
    """

    def __init__(self, source: SnapshotSource | Snapshot) -> None:
        self._source: SnapshotSource = StaticSource(source) if isinstance(source, Snapshot) else source

    @property
    def snapshot(self) -> Snapshot:
        return self._source.snapshot

    def check(self, principal: Principal, server: str, action: str, obj: str | None,
              arguments: Mapping[str, Any] | None = None) -> Decision:
        """Decide whether ``principal`` may perform ``action`` on ``obj`` at upstream ``server``.

        ``action`` is an MCP method (``tools/call``), ``response/<method>`` for a client's answer
        to a server request, or ``pii/reveal`` (``obj`` then is ``<tool>/<ENTITY_TYPE>``).
        ``arguments`` is the JSON the condition column reads (never evaluated as code).
        """
        return self._source.snapshot.decide(principal, server, action, obj, arguments)

    def may_use(self, principal: Principal, server: str, action: str, obj: str) -> bool:
        """True if some arguments could make ``action`` on ``obj`` allowed (list filtering)."""
        return self._source.snapshot.decide(principal, server, action, obj, ANY_ARGUMENTS).allowed

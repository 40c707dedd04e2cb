"""Parse a Casbin ``policy.csv`` into typed, validated rules and role links. No I/O.

Line format (Casbin CSV: comma-separated, ``#`` starts a comment line, a field may be
double-quoted to contain a comma, ``""`` inside quotes is one quote)::

    p, SUBJECT, SERVER, METHOD, TARGET, allow|deny[, CONDITION]
    g, MEMBER, role:ROLE

Every problem is collected with its line number; one bad line makes the whole file invalid
(a reload then keeps the previous policy). Subjects follow the naming convention of
:mod:`guard.policy.model` (``user:``, ``role:``, ``anonymous``, ``*``), which the parser
enforces so that ``analyst`` (a typo for ``role:analyst``) is an error, not a rule that
never matches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from guard.policy.conditions import Condition, ConditionError, parse_condition
from guard.policy.glob import Glob, GlobError, compile_glob
from guard.policy.model import (
    ANONYMOUS_SUBJECT,
    ANY_SUBJECT,
    BUILTIN_RULES,
    ROLE_PREFIX,
    USER_PREFIX,
)

BUILTIN_SOURCE: Final = "builtin"
MAX_FIELD_LENGTH: Final = 1024

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One finding about a policy file, with its location."""

    source: str
    line: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One ``p`` line. ``order`` is its position in evaluation order (built-ins first)."""

    order: int
    source: str
    line: int
    subject: str
    server: Glob
    action: Glob
    obj: Glob
    allow: bool
    cond: Condition | None
    described: str = field(init=False)
    """What ``Decision.rule`` records: the line, prefixed with ``builtin: `` for built-ins
    (computed once: it is recorded for every decision)."""

    def __post_init__(self) -> None:
        described = f"builtin: {self.text}" if self.source == BUILTIN_SOURCE else self.text
        object.__setattr__(self, "described", described)

    @property
    def fields(self) -> tuple[str, str, str, str, str, str]:
        """The six Casbin policy fields (``cond`` empty when absent)."""
        return (self.subject, self.server.text, self.action.text, self.obj.text,
                "allow" if self.allow else "deny", self.cond.text if self.cond else "")

    @property
    def text(self) -> str:
        """The rule as a canonical policy line, e.g. ``p, role:analyst, demo, tools/call, find_*, allow``."""
        fields = list(self.fields)
        if not fields[-1]:
            fields.pop()
        return ", ".join(["p", *(_quote(f) for f in fields)])

    @property
    def location(self) -> str:
        return BUILTIN_SOURCE if self.source == BUILTIN_SOURCE else f"{self.source}:{self.line}"


@dataclass(frozen=True, slots=True)
class Link:
    """One ``g`` line: ``member`` holds ``role``."""

    source: str
    line: int
    member: str
    role: str


@dataclass(frozen=True)
class ParsedPolicy:
    """The result of parsing: rules (built-ins first), links, and every error found."""

    rules: tuple[Rule, ...]
    links: tuple[Link, ...]
    problems: tuple[PolicyProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def _quote(value: str) -> str:
    if any(ch in value for ch in ',"') or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value


def split_fields(line: str) -> list[str]:
    """Split one CSV line at commas outside double quotes; fields are stripped and unquoted.

    Raises ValueError for an unterminated quote or text after a closing quote.
    """
    fields: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted field")
                ch = line[i]
                if ch == '"':
                    if i + 1 < n and line[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(ch)
                i += 1
            while i < n and line[i] in " \t":
                i += 1
            if i < n and line[i] != ",":
                raise ValueError("text after a closing quote")
            fields.append("".join(buf))
        else:
            j = line.find(",", i)
            end = n if j < 0 else j
            fields.append(line[i:end].strip())
            i = end
        if i >= n:
            return fields
        i += 1  # skip the comma


def _has_control(value: str) -> bool:
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value)


def check_subject(value: str, *, allow_any: bool) -> str | None:
    """An error message if ``value`` breaks the naming convention, else None."""
    if value == ANY_SUBJECT:
        return None if allow_any else "'*' is not allowed here"
    if value == ANONYMOUS_SUBJECT:
        return None
    for prefix in (USER_PREFIX, ROLE_PREFIX):
        if value.startswith(prefix):
            return None if value[len(prefix):] else f"{prefix!r} needs a name after it"
    return f"subject {value!r} must be user:NAME, role:NAME, anonymous or *"


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.rules: list[Rule] = []
        self.links: list[Link] = []
        self.problems: list[PolicyProblem] = []

    def error(self, line: int, message: str) -> None:
        self.problems.append(PolicyProblem(self.source, line, message))

    def add_rule(self, source: str, line: int, fields: list[str]) -> None:
        if len(fields) not in (5, 6):
            self.error(line, f"a p line needs 5 or 6 fields after 'p' (sub, srv, act, obj, eft[, cond]), "
                             f"got {len(fields)}")
            return
        sub, srv, act, obj, eft = fields[:5]
        cond_text = fields[5] if len(fields) == 6 else ""
        ok = True
        problem = check_subject(sub, allow_any=True)
        if problem:
            self.error(line, problem)
            ok = False
        globs: list[Glob] = []
        for name, value in (("server", srv), ("method", act), ("target", obj)):
            try:
                globs.append(compile_glob(value))
            except GlobError as exc:
                self.error(line, f"{name} {value!r}: {exc}")
                ok = False
        if eft not in ("allow", "deny"):
            self.error(line, f"effect must be allow or deny, not {eft!r}")
            ok = False
        cond: Condition | None = None
        try:
            cond = parse_condition(cond_text)
        except ConditionError as exc:
            self.error(line, f"condition: {exc}")
            ok = False
        if cond is not None and cond.uses_star and eft == "deny":
            self.error(line, "condition: [*] is ambiguous in a deny rule; write [any] (deny if some element "
                             "matches) or [all] (deny only if every element does)")
            ok = False
        if ok:
            self.rules.append(Rule(len(self.rules), source, line, sub, globs[0], globs[1], globs[2],
                                   eft == "allow", cond))

    def add_link(self, line: int, fields: list[str]) -> None:
        if len(fields) != 2:
            self.error(line, f"a g line needs 2 fields after 'g' (member, role), got {len(fields)}")
            return
        member, role = fields
        problem = check_subject(member, allow_any=False)
        if problem:
            self.error(line, problem)
            return
        if not role.startswith(ROLE_PREFIX) or role == ROLE_PREFIX:
            self.error(line, f"the second field of a g line must be role:NAME, not {role!r}")
            return
        self.links.append(Link(self.source, line, member, role))

    def feed(self, number: int, raw: str) -> None:
        text = raw.strip()
        if not text or text.startswith("#"):
            return
        try:
            fields = split_fields(text)
        except ValueError as exc:
            self.error(number, str(exc))
            return
        if any(_has_control(f) for f in fields):
            self.error(number, "control characters are not allowed")
            return
        if any(len(f) > MAX_FIELD_LENGTH for f in fields):
            self.error(number, f"a field is longer than {MAX_FIELD_LENGTH} characters")
            return
        kind, rest = fields[0], fields[1:]
        if kind == "p":
            self.add_rule(self.source, number, rest)
        elif kind == "g":
            self.add_link(number, rest)
        else:
            self.error(number, f"unknown line type {kind!r} (expected p or g)")


def parse_policy_text(text: str, source: str = "policy.csv", *, builtins: bool = True) -> ParsedPolicy:
    """Parse the text of a policy file. ``builtins`` prepends :data:`BUILTIN_RULES`."""
    builder = _Builder(source)
    if builtins:
        for fields in BUILTIN_RULES:
            builder.add_rule(BUILTIN_SOURCE, 0, list(fields))
    if text.startswith("\ufeff"):
        text = text[1:]
    # split("\n") rather than splitlines(): a stray \x0b or \u2028 inside a line is an error to
    # report at its line, not a silent line break.
    for number, raw in enumerate(text.split("\n"), start=1):
        builder.feed(number, raw.removesuffix("\r"))
    return ParsedPolicy(tuple(builder.rules), tuple(builder.links), tuple(builder.problems))

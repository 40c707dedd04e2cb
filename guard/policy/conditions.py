"""Argument conditions: a small declarative language for the policy's ``cond`` column.

A rule may constrain the request's arguments, e.g.::

    p, role:analyst, db, tools/call, query, allow, database == analytics
    p, role:reader, files, tools/call, read_file, allow, path under /srv/public/
    p, role:ops, db, tools/call, query, allow, database in analytics|reporting && limit <= 1000

Grammar (operators are words or symbols; values are the rest of the clause, trimmed)::

    cond    := clause ( "&&" clause )*
    clause  := path op value | path "exists" | path "absent"
    path    := name ( "." name )*        name := [A-Za-z_][A-Za-z0-9_-]* optionally followed by "[*]"
    op      := == | != | in | not in | under | glob | < | <= | > | >=

Security properties:

* Nothing is ever evaluated as code: request data is only *read* through :func:`resolve`
  (dict/list lookups) and compared with typed predicates. The condition text comes from
  the operator's policy file and is parsed once into an immutable :class:`Condition`.
* Fail closed: a clause about a missing argument, or an argument of the wrong type, is
  false (``!=`` and ``not in`` included); only ``absent`` holds for a missing argument.
* ``under`` normalizes paths before comparing (``/srv/public/../secret`` is *not* under
  ``/srv/public/``); relative paths, backslashes, NUL and control characters never match.
* ``x[*] op v`` holds when it holds for every element of the list ``x``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from guard.policy.glob import Glob, GlobError, compile_glob

MAX_CONDITION_LENGTH: Final = 1024
MAX_CLAUSES: Final = 16
MAX_IN_VALUES: Final = 256

_MISSING: Final = object()
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}(\[\*\])?")
_OPERATORS: Final = ("not in", "exists", "absent", "under", "glob", "==", "!=", "<=", ">=", "<", ">", "in")
_WORD_OPERATORS: Final = frozenset({"not in", "exists", "absent", "under", "glob", "in"})
_UNARY: Final = frozenset({"exists", "absent"})


class ConditionError(ValueError):
    """A ``cond`` column that does not parse."""


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    each: bool


@dataclass(frozen=True, slots=True)
class Clause:
    """One ``path op value`` test."""

    path: tuple[Segment, ...]
    op: str
    text: str
    predicate: Callable[[Any], bool]

    def holds(self, arguments: Any) -> bool:
        return all(self.predicate(v) for v in resolve(arguments, self.path))


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed ``cond`` column: all clauses must hold."""

    text: str
    clauses: tuple[Clause, ...]

    def holds(self, arguments: Any) -> bool:
        return all(clause.holds(arguments) for clause in self.clauses)

    def failing(self, arguments: Any) -> list[str]:
        """The clauses that do not hold (for ``guard policy explain``)."""
        return [c.text for c in self.clauses if not c.holds(arguments)]

    @property
    def argument_names(self) -> frozenset[str]:
        """Top-level argument names the condition reads (part of a decision cache key)."""
        return frozenset(c.path[0].name for c in self.clauses)


def resolve(arguments: Any, path: tuple[Segment, ...]) -> list[Any]:
    """Read-only lookup of ``path`` in JSON ``arguments``: the value(s) found, ``_MISSING`` where absent.

    ``name[*]`` fans out over a list; the result then has one entry per element.
    """
    values: list[Any] = [arguments]
    for seg in path:
        nxt: list[Any] = []
        for v in values:
            child = v.get(seg.name, _MISSING) if isinstance(v, Mapping) else _MISSING
            if seg.each:
                if isinstance(child, list):
                    nxt.extend(child)
                else:
                    nxt.append(_MISSING)
            else:
                nxt.append(child)
        values = nxt
    return values


def normalize_path(value: str) -> str | None:
    """Lexically normalize an absolute POSIX path (or ``file://`` URI); ``None`` if unacceptable.

    ``..`` pops a segment (and stays at ``/`` at the root, as POSIX does), ``.`` and empty
    segments vanish. ``file://`` URIs are percent-decoded first (RFC 8089), so
    ``file:///srv/public/%2e%2e/secret`` normalizes to ``/srv/secret``. Relative paths,
    backslashes (a Windows separator an upstream might honour), NUL and other control
    characters give ``None``, which makes every ``under`` clause false (fail closed).
    Symbolic links cannot be resolved here: they live on the upstream's filesystem.
    """
    if value.startswith("file://"):
        rest = value[len("file://"):]
        if rest.startswith("localhost/"):
            rest = rest[len("localhost"):]
        if not rest.startswith("/") or "?" in rest or "#" in rest:
            return None
        value = unquote(rest, errors="strict") if "%" in rest else rest
    if not value.startswith("/") or "\\" in value:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    parts: list[str] = []
    for seg in value.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    return "/" + "/".join(parts)


def is_under(value: Any, base: str) -> bool:
    """True if the string ``value`` normalizes to ``base`` or a path below it."""
    if not isinstance(value, str):
        return False
    try:
        normalized = normalize_path(value)
    except UnicodeDecodeError:
        return False
    if normalized is None:
        return False
    return base == "/" or normalized == base or normalized.startswith(base + "/")


def _scalar_text(value: Any) -> str | None:
    """The text a scalar argument compares as (JSON spelling for non-strings); None otherwise."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return None


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _equals(value: Any, expected: str, expected_number: float | None) -> bool:
    if value is _MISSING:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return expected_number is not None and value == expected_number
    text = _scalar_text(value)
    return text is not None and text == expected


def _parse_path(text: str) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    for part in text.split("."):
        if not _NAME_RE.fullmatch(part):
            raise ConditionError(f"bad argument path {text!r} (names are letters, digits, _ and -)")
        each = part.endswith("[*]")
        segments.append(Segment(part[:-3] if each else part, each))
    if len(segments) > 8:
        raise ConditionError(f"argument path {text!r} is deeper than 8 levels")
    return tuple(segments)


def _split_operator(text: str) -> tuple[str, str, str]:
    """Split ``path op value`` at the first operator after the path."""
    match = re.match(r"\s*([A-Za-z0-9_.\[\]*-]+)\s*", text)
    if match is None:
        raise ConditionError(f"clause {text!r} does not start with an argument path")
    path, rest = match.group(1), text[match.end():]
    for op in _OPERATORS:
        if rest.startswith(op):
            after = rest[len(op):]
            if op in _WORD_OPERATORS and after and not after[0].isspace():
                continue
            return path, op, after.strip()
    raise ConditionError(
        f"clause {text!r} has no operator (one of ==, !=, in, not in, under, glob, <, <=, >, >=, exists, absent)"
    )


def _predicate(op: str, value: str, clause: str) -> Callable[[Any], bool]:
    if op in _UNARY:
        if value:
            raise ConditionError(f"{op!r} takes no value in {clause!r}")
        if op == "exists":
            return lambda v: v is not _MISSING
        return lambda v: v is _MISSING
    if not value:
        raise ConditionError(f"clause {clause!r} needs a value after {op!r}")
    if op in ("==", "!="):
        number = _number(value)
        if op == "==":
            return lambda v: _equals(v, value, number)
        return lambda v: _scalar_or_number(v) and not _equals(v, value, number)
    if op in ("in", "not in"):
        options = tuple(o.strip() for o in value.split("|"))
        if not all(options) or len(options) > MAX_IN_VALUES:
            raise ConditionError(f"{op!r} needs 1-{MAX_IN_VALUES} non-empty values separated by | in {clause!r}")
        pairs = tuple((o, _number(o)) for o in options)

        def member(v: Any) -> bool:
            return any(_equals(v, o, n) for o, n in pairs)

        if op == "in":
            return member
        return lambda v: _scalar_or_number(v) and not member(v)
    if op == "under":
        base = normalize_path(value)
        if base is None or value.startswith("file://"):
            raise ConditionError(f"'under' needs an absolute path in {clause!r}")
        return lambda v: is_under(v, base)
    if op == "glob":
        try:
            pattern: Glob = compile_glob(value)
        except GlobError as exc:
            raise ConditionError(f"bad glob in {clause!r}: {exc}") from exc
        return lambda v: isinstance(v, str) and pattern.match(v)
    bound = _number(value)
    if bound is None:
        raise ConditionError(f"{op!r} needs a finite number in {clause!r}")
    compare: dict[str, Callable[[float, float], bool]] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    fn = compare[op]
    return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and fn(v, bound)


def _scalar_or_number(value: Any) -> bool:
    if value is _MISSING:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    return _scalar_text(value) is not None


_PARSED: dict[str, Condition] = {}


def parse_condition(text: str) -> Condition | None:
    """Parse a ``cond`` column (``None`` for an empty one). Raises :class:`ConditionError`."""
    text = text.strip()
    if not text:
        return None
    cached = _PARSED.get(text)
    if cached is not None:
        return cached
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionError(f"condition longer than {MAX_CONDITION_LENGTH} characters")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise ConditionError("control characters are not allowed in conditions")
    parts = text.split("&&")
    if len(parts) > MAX_CLAUSES:
        raise ConditionError(f"more than {MAX_CLAUSES} clauses")
    clauses: list[Clause] = []
    for raw in parts:
        clause_text = raw.strip()
        if not clause_text:
            raise ConditionError(f"empty clause in {text!r}")
        path_text, op, value = _split_operator(clause_text)
        path = _parse_path(path_text)
        clauses.append(Clause(path, op, clause_text, _predicate(op, value, clause_text)))
    condition = Condition(text, tuple(clauses))
    if len(_PARSED) > 65536:
        _PARSED.clear()
    _PARSED[text] = condition
    return condition

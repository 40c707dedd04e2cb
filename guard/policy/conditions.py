"""Argument conditions: a small declarative language for the policy's ``cond`` column.

A rule may constrain the request's arguments, e.g.::

    p, role:analyst, db, tools/call, query, allow, database == analytics
    p, role:reader, files, tools/call, read_file, allow, path under /srv/public/
    p, role:ops, db, tools/call, query, allow, database in analytics|reporting && limit <= 1000
    p, *, demo, tools/call, delete_customer, deny, customer_id ~== C001
    p, *, mail, tools/call, send, deny, recipients[any] ~glob *@evil.example

Grammar (operators are words or symbols; values are the rest of the clause, trimmed)::

    cond    := clause ( "&&" clause )*
    clause  := path op value | path "exists" | path "absent"
    path    := segment ( "." segment )*
    segment := name [ "[all]" | "[any]" ]      name := [A-Za-z_][A-Za-z0-9_-]*
    op      := == | != | in | not in | glob | under | < | <= | > | >=
             | ~== | ~!= | ~in | ~not in | ~glob          (compare normalized text)

Three-valued evaluation. A clause is *true*, *false* or *undecidable*; a condition (the
clauses joined with ``&&``) is false if any clause is false, else undecidable if any clause
is, else true (Kleene logic). A clause is undecidable when the value at hand cannot be
judged the way the server might read it:

* the argument is missing (only ``exists``/``absent`` decide on presence), or ``null`` where
  the literal is not ``null``;
* it has the wrong type: a list or object where a scalar is expected, a number or boolean
  where the literal is text, a string that is not a number where a number is expected
  (``"5000"`` *is* a number: servers parse it), text other than ``true``/``false`` where a
  boolean is expected;
* a path cannot be normalized (``under`` on a relative path, a backslash, a bad escape);
* it is :data:`UNDECIDABLE`, the marker a caller substitutes for a value it cannot judge
  (e.g. a protected-value token that does not open).

The engine then fails closed in the direction that matters (:mod:`guard.policy.engine`): an
``allow`` rule applies only when its condition is true; a ``deny`` rule applies unless its
condition is false. So ``deny, customer_id ~== C001`` denies ``"c001"``, ``" C001"``,
``["C001"]`` and a call without ``customer_id``.

Quantifiers are explicit: ``paths[all] under /srv`` holds when every element does (an empty
list: vacuously), ``recipients[any] glob *@x`` when some element does; a value that is not a
list makes the clause undecidable. The old ``[*]`` (meaning "all") is still read in allow
rules, where "all" is the safe reading, and refused in deny rules (:mod:`guard.policy.rules`).

Normalized comparison (``~`` operators): both sides are compared after Unicode NFKC
normalization and case folding, with all whitespace and invisible format characters
(zero-width spaces, soft hyphens) removed -- so a deny rule keeps holding when the server
strips, upper-cases or otherwise normalizes what it receives.

Security properties: nothing is ever evaluated as code -- request data is only *read*
(dict/list lookups) and compared with typed predicates; the condition text comes from the
operator's policy file and is parsed once into an immutable :class:`Condition`.
"""

from __future__ import annotations

import math
import operator
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import unquote

from guard.policy.glob import Glob, GlobError, compile_glob

MAX_CONDITION_LENGTH: Final = 1024
MAX_CLAUSES: Final = 16
MAX_IN_VALUES: Final = 256
MAX_PATH_DEPTH: Final = 8
"""Segments in one argument path. A condition reads at most ``2 * MAX_PATH_DEPTH`` levels of
nesting (an object per segment, a list per quantifier)."""
MAX_NUMBER_TEXT: Final = 400
"""Longest string read as a number (longer strings are undecidable where a number is expected)."""

Truth = bool | None
"""A clause's or condition's value: ``True``, ``False`` or ``None`` (undecidable)."""


class _Marker:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


MISSING: Final = _Marker("MISSING")
"""What a path resolves to where the arguments have no such key."""
UNDECIDABLE: Final = _Marker("UNDECIDABLE")
"""A value no condition can judge (e.g. a protected-value token that does not open). Every
clause that reads it, ``exists``/``absent`` included, is undecidable."""

Quantifier = Literal["all", "any"]
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}(\[(?:all|any|\*)\])?")
_OPERATORS: Final = ("~not in", "~glob", "~in", "~==", "~!=", "not in", "exists", "absent", "under", "glob",
                     "==", "!=", "<=", ">=", "<", ">", "in")
_WORD_OPERATORS: Final = frozenset({"~not in", "~glob", "~in", "not in", "exists", "absent", "under", "glob",
                                    "in"})
_UNARY: Final = frozenset({"exists", "absent"})
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_SPACE: Final = " \t\r\n"
_ORDER: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class ConditionError(ValueError):
    """A ``cond`` column that does not parse."""


# -- three-valued logic ---------------------------------------------------------------------

def all_of(values: Iterable[Truth]) -> Truth:
    """Kleene conjunction: false wins, then undecidable (an empty input is true)."""
    result: Truth = True
    for value in values:
        if value is False:
            return False
        if value is None:
            result = None
    return result


def any_of(values: Iterable[Truth]) -> Truth:
    """Kleene disjunction: true wins, then undecidable (an empty input is false)."""
    result: Truth = False
    for value in values:
        if value is True:
            return True
        if value is None:
            result = None
    return result


def negate(value: Truth) -> Truth:
    return None if value is None else not value


# -- normalization ---------------------------------------------------------------------------

def fold(text: str) -> str:
    """The normalized form the ``~`` operators compare: NFKC, case-folded, without whitespace
    or invisible format characters (Unicode category Cf: zero-width spaces, soft hyphens...)."""
    if text.isascii():
        return "".join(text.lower().split())
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cf")


def as_number(value: Any) -> int | float | Decimal | None:
    """The number a server could read ``value`` as, exactly; ``None`` if it is not one.

    JSON numbers are themselves (booleans are not numbers; non-finite floats are refused);
    a string counts when it is a JSON number once surrounding whitespace is stripped
    (``"5000"``, ``" 1e3 "``), read exactly as a :class:`~decimal.Decimal`. Anything else
    -- ``"0x10"``, ``"1_000"``, ``"+5"``, full-width digits -- is not a number here, which
    makes a numeric clause undecidable (deny rules then deny).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= MAX_NUMBER_TEXT:
        text = value.strip(_JSON_SPACE)
        if _JSON_NUMBER.fullmatch(text):
            return Decimal(text)
    return None


def normalize_path(value: str) -> str | None:
    """Lexically normalize an absolute POSIX path (or ``file://`` URI); ``None`` if unacceptable.

    ``..`` pops a segment (and stays at ``/`` at the root, as POSIX does), ``.`` and empty
    segments vanish. ``file://`` URIs are percent-decoded first (RFC 8089), so
    ``file:///srv/public/%2e%2e/secret`` normalizes to ``/srv/secret``. Relative paths,
    backslashes (a Windows separator an upstream might honour), NUL and other control
    characters give ``None``, which makes every ``under`` clause undecidable (fail closed).
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


def is_under(value: Any, base: str) -> Truth:
    """Whether ``value`` normalizes to ``base`` or a path below it (undecidable if it cannot)."""
    if not isinstance(value, str):
        return None
    try:
        normalized = normalize_path(value)
    except UnicodeDecodeError:
        return None
    if normalized is None:
        return None
    return base == "/" or normalized == base or normalized.startswith(base + "/")


# -- literals --------------------------------------------------------------------------------

LiteralKind = Literal["number", "bool", "null", "text"]


@dataclass(frozen=True, slots=True)
class Value:
    """A literal from the policy, typed once: what a value must be to be compared with it."""

    text: str
    kind: LiteralKind
    number: Decimal | None = None
    folded: str = ""

    @staticmethod
    def of(text: str) -> Value:
        if text in ("true", "false"):
            return Value(text, "bool", folded=text)
        if text == "null":
            return Value(text, "null", folded=text)
        if _JSON_NUMBER.fullmatch(text):
            return Value(text, "number", Decimal(text), folded=text)
        return Value(text, "text", folded=fold(text))


def _not_scalar(value: Any) -> bool:
    return value is MISSING or value is UNDECIDABLE or isinstance(value, list | dict)


def equals(value: Any, literal: Value, folded: bool) -> Truth:
    """``value == literal`` when their types allow a judgement, else undecidable."""
    if _not_scalar(value):
        return None
    kind = literal.kind
    if kind == "null":
        return value is None
    if value is None:
        return None
    if kind == "number":
        number = as_number(value)
        return None if number is None else number == literal.number
    if kind == "bool":
        if isinstance(value, bool):
            return value is (literal.text == "true")
        if isinstance(value, str):
            text = fold(value) if folded else value
            if text in ("true", "false"):
                return text == literal.text
        return None
    if isinstance(value, str):
        return fold(value) == literal.folded if folded else value == literal.text
    return None


# -- clauses ---------------------------------------------------------------------------------

Leaf = Callable[[Any], Truth]


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    quantifier: Quantifier | None = None
    star: bool = False
    """Written ``[*]`` (the legacy spelling of ``[all]``)."""


def evaluate_path(node: Any, path: tuple[Segment, ...], leaf: Leaf, index: int = 0) -> Truth:
    """Apply ``leaf`` to what ``path`` reaches in ``node``, combining quantified lists.

    A missing key (or a ``null`` on the way) reaches :data:`MISSING`; a list, string or number
    where an object is expected, or a non-list under a quantifier, is undecidable.
    """
    if index == len(path):
        return leaf(node)
    if node is UNDECIDABLE:
        return None
    segment = path[index]
    if isinstance(node, Mapping):
        child = node.get(segment.name, MISSING)
    elif node is MISSING or node is None:
        child = MISSING
    else:
        return None
    if segment.quantifier is None:
        return evaluate_path(child, path, leaf, index + 1)
    if not isinstance(child, list):
        return None
    results = (evaluate_path(element, path, leaf, index + 1) for element in child)
    return all_of(results) if segment.quantifier == "all" else any_of(results)


@dataclass(frozen=True, slots=True)
class Clause:
    """One ``path op value`` test."""

    path: tuple[Segment, ...]
    op: str
    text: str
    leaf: Leaf
    literals: tuple[Value, ...] = ()
    """The typed values compared against (``==``, ``!=``, ``in``, ``not in``, ``glob`` and ``~`` forms)."""

    def evaluate(self, arguments: Any) -> Truth:
        return evaluate_path(arguments, self.path, self.leaf)

    @property
    def uses_star(self) -> bool:
        return any(segment.star for segment in self.path)


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed ``cond`` column: all clauses must hold."""

    text: str
    clauses: tuple[Clause, ...]

    def evaluate(self, arguments: Any) -> Truth:
        """True, false, or ``None`` when the arguments at hand do not decide it."""
        return all_of(clause.evaluate(arguments) for clause in self.clauses)

    def holds(self, arguments: Any) -> bool:
        """True only when the condition is decidably true (what an allow rule needs)."""
        return self.evaluate(arguments) is True

    def failing(self, arguments: Any) -> list[str]:
        """The clauses that are not true, each marked false or undecidable (for ``explain``)."""
        out: list[str] = []
        for clause in self.clauses:
            value = clause.evaluate(arguments)
            if value is False:
                out.append(clause.text)
            elif value is None:
                out.append(f"{clause.text} (undecidable)")
        return out

    @property
    def uses_star(self) -> bool:
        """Written with the legacy ``[*]`` quantifier somewhere."""
        return any(clause.uses_star for clause in self.clauses)


def _parse_path(text: str) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    for part in text.split("."):
        match = _NAME_RE.fullmatch(part)
        if match is None:
            raise ConditionError(f"bad argument path {text!r} (names are letters, digits, _ and -, "
                                 "optionally followed by [all] or [any])")
        bracket = match.group(1)
        if bracket is None:
            segments.append(Segment(part))
        else:
            name = part[: -len(bracket)]
            quantifier: Quantifier = "any" if bracket == "[any]" else "all"
            segments.append(Segment(name, quantifier, star=bracket == "[*]"))
    if len(segments) > MAX_PATH_DEPTH:
        raise ConditionError(f"argument path {text!r} is deeper than {MAX_PATH_DEPTH} levels")
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
        f"clause {text!r} has no operator (one of ==, !=, in, not in, under, glob, <, <=, >, >=, exists, absent, "
        "or ~==, ~!=, ~in, ~not in, ~glob)"
    )


def _leaf(op: str, value: str, clause: str) -> Leaf:
    if op in _UNARY:
        if value:
            raise ConditionError(f"{op!r} takes no value in {clause!r}")
        if op == "exists":
            return lambda v: None if v is UNDECIDABLE else v is not MISSING
        return lambda v: None if v is UNDECIDABLE else v is MISSING
    if not value:
        raise ConditionError(f"clause {clause!r} needs a value after {op!r}")
    folded = op.startswith("~")
    base = op.removeprefix("~")
    if base in ("==", "!="):
        literal = Value.of(value)
        if base == "==":
            return lambda v: equals(v, literal, folded)
        return lambda v: negate(equals(v, literal, folded))
    if base in ("in", "not in"):
        options = tuple(o.strip() for o in value.split("|"))
        if not all(options) or len(options) > MAX_IN_VALUES:
            raise ConditionError(f"{op!r} needs 1-{MAX_IN_VALUES} non-empty values separated by | in {clause!r}")
        literals = tuple(Value.of(o) for o in options)

        def member(v: Any) -> Truth:
            return any_of(equals(v, lit, folded) for lit in literals)

        if base == "in":
            return member
        return lambda v: negate(member(v))
    if op == "under":
        base_path = normalize_path(value)
        if base_path is None or value.startswith("file://"):
            raise ConditionError(f"'under' needs an absolute path in {clause!r}")
        return lambda v: is_under(v, base_path)
    if base == "glob":
        try:
            pattern: Glob = compile_glob(fold(value) if folded else value)
        except GlobError as exc:
            raise ConditionError(f"bad glob in {clause!r}: {exc}") from exc
        if folded:
            return lambda v: pattern.match(fold(v)) if isinstance(v, str) else None
        return lambda v: pattern.match(v) if isinstance(v, str) else None
    if not _JSON_NUMBER.fullmatch(value):
        raise ConditionError(f"{op!r} needs a finite number in {clause!r}")
    bound = Decimal(value)
    compare = _ORDER[op]

    def ordered(v: Any) -> Truth:
        number = as_number(v)
        return None if number is None else compare(number, bound)

    return ordered


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
        leaf = _leaf(op, value, clause_text)
        bare = op.removeprefix("~")
        literals: tuple[Value, ...] = ()
        if bare in ("==", "!="):
            literals = (Value.of(value),)
        elif bare in ("in", "not in"):
            literals = tuple(Value.of(o.strip()) for o in value.split("|"))
        elif bare == "glob":
            literals = (Value(value, "text", folded=fold(value)),)
        clauses.append(Clause(path, op, clause_text, leaf, literals))
    condition = Condition(text, tuple(clauses))
    if len(_PARSED) > 65536:
        _PARSED.clear()
    _PARSED[text] = condition
    return condition

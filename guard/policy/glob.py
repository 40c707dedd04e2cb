"""Anchored, linear-time glob patterns for policy fields (servers, methods, tool names, URIs).

Why not regular expressions: a policy author's pattern is matched against attacker-chosen
targets on every message. ``fnmatch``/``re`` translations of patterns such as
``*a*a*a*a*b`` backtrack exponentially (ReDoS); raw regexes are worse. guard therefore
accepts only globs and matches them with the two-restart-point algorithm described by
Russ Cox ("Glob Matching Can Be Simple And Fast Too", research.swtch.com/glob, 2017):
``O(len(pattern) * len(target))`` in the worst case, no recursion, no backtracking stack.

Syntax (every pattern is anchored at both ends: ``read_file`` never matches ``read_file_x``):

* a field that is exactly ``*`` matches any value, including the empty one;
* ``*`` matches any run of characters except ``/`` (one path segment);
* ``**`` matches any run of characters, ``/`` included;
* ``?`` matches one character except ``/``;
* every other character is literal (``[``, ``{``, ``\\`` and ``.`` included).

Patterns are bounded (:data:`MAX_PATTERN_LENGTH`, :data:`MAX_WILDCARDS`) and raw regular
expressions (``regex:...``, ``^...``) are refused, so a policy cannot smuggle in a slow pattern.
"""

from __future__ import annotations

from typing import Final

MAX_PATTERN_LENGTH: Final = 256
"""Longest accepted pattern."""
MAX_WILDCARDS: Final = 16
"""Most ``*``/``**``/``?`` wildcards in one pattern."""

_STAR: Final = -1
_DSTAR: Final = -2
_QMARK: Final = -3


class GlobError(ValueError):
    """A pattern is not an acceptable glob (too long, too many wildcards, a regex)."""


class Glob:
    """One compiled, anchored glob. Immutable; compare and hash by source text."""

    __slots__ = ("_kind", "_literal", "_tokens", "text")

    def __init__(self, text: str) -> None:
        _validate(text)
        self.text = text
        self._tokens: tuple[int | str, ...] = ()
        self._literal = ""
        if text == "*":
            self._kind = "any"
        elif not _has_wildcard(text):
            self._kind = "exact"
            self._literal = text
        elif text.endswith("**") and not _has_wildcard(text[:-2]):
            self._kind = "prefix_any"
            self._literal = text[:-2]
        elif text.endswith("*") and not _has_wildcard(text[:-1]):
            self._kind = "prefix_segment"
            self._literal = text[:-1]
        else:
            self._kind = "general"
            self._tokens = _tokenize(text)

    @property
    def is_any(self) -> bool:
        """True for the whole-field wildcard ``*``."""
        return self._kind == "any"

    @property
    def is_literal(self) -> bool:
        """True when the pattern has no wildcard (matches exactly one value)."""
        return self._kind == "exact"

    @property
    def literal_prefix(self) -> str:
        """The literal text before the first wildcard (all of it for a literal pattern)."""
        for i, ch in enumerate(self.text):
            if ch in "*?":
                return self.text[:i]
        return self.text

    def match(self, value: str) -> bool:
        """True if ``value`` matches the whole pattern."""
        kind = self._kind
        if kind == "exact":
            return value == self._literal
        if kind == "any":
            return True
        if kind == "prefix_segment":
            return value.startswith(self._literal) and "/" not in value[len(self._literal):]
        if kind == "prefix_any":
            return value.startswith(self._literal)
        return _match_tokens(self._tokens, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Glob) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"Glob({self.text!r})"


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def _validate(text: str) -> None:
    if not text:
        raise GlobError("empty pattern (use * to match anything)")
    if len(text) > MAX_PATTERN_LENGTH:
        raise GlobError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    lowered = text.lower()
    if lowered.startswith(("regex:", "re:", "regexp:")) or text.startswith("^"):
        raise GlobError("regular expressions are not supported; write an anchored glob (*, **, ?)")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text):
        raise GlobError("control characters are not allowed in patterns")
    if "***" in text:
        raise GlobError("'***' is ambiguous; use '*' (one segment) or '**' (any depth)")
    wildcards = text.count("?") + text.count("*") - text.count("**")
    if wildcards > MAX_WILDCARDS:
        raise GlobError(f"more than {MAX_WILDCARDS} wildcards in one pattern")


def _tokenize(text: str) -> tuple[int | str, ...]:
    tokens: list[int | str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "*":
            if text.startswith("**", i):
                tokens.append(_DSTAR)
                i += 2
                continue
            tokens.append(_STAR)
        elif ch == "?":
            tokens.append(_QMARK)
        else:
            tokens.append(ch)
        i += 1
    return tuple(tokens)


def _match_tokens(tokens: tuple[int | str, ...], name: str) -> bool:
    """Cox's glob matcher with two restart points: the latest ``*`` and the latest ``**``.

    On a mismatch, first let the latest ``*`` absorb one more character (never a ``/``);
    failing that, let the latest ``**`` absorb one more (anything). Earlier wildcards never
    need revisiting, which is what keeps this linear per restart instead of exponential.
    """
    px = nx = 0
    m, n = len(tokens), len(name)
    star_px = star_nx = -1
    dstar_px = dstar_nx = -1
    while px < m or nx < n:
        if px < m:
            tok = tokens[px]
            if tok == _STAR:
                star_px, star_nx = px, nx + 1
                px += 1
                continue
            if tok == _DSTAR:
                dstar_px, dstar_nx = px, nx + 1
                star_px = star_nx = -1
                px += 1
                continue
            if nx < n:
                ch = name[nx]
                if (tok == _QMARK and ch != "/") or tok == ch:
                    px += 1
                    nx += 1
                    continue
        if 0 < star_nx <= n and name[star_nx - 1] != "/":
            px, nx = star_px, star_nx
            continue
        if 0 < dstar_nx <= n:
            px, nx = dstar_px, dstar_nx
            continue
        return False
    return True


_CACHE: dict[str, Glob] = {}


def compile_glob(text: str) -> Glob:
    """A compiled :class:`Glob` (memoised; raises :class:`GlobError` for a bad pattern)."""
    glob = _CACHE.get(text)
    if glob is None:
        glob = Glob(text)
        if len(_CACHE) > 65536:
            _CACHE.clear()
        _CACHE[text] = glob
    return glob


def covers(general: Glob, specific: Glob) -> bool:
    """Conservative test that every value ``specific`` matches is also matched by ``general``.

    Used by ``guard policy check`` to find shadowed rules. Never answers True wrongly; may
    answer False for some covering pairs it cannot prove.
    """
    if general.is_any or general.text == specific.text:
        return True
    if specific.is_literal:
        return general.match(specific.text)
    if specific.is_any:
        return False
    g, s = general.text, specific.text
    if g.endswith("**") and not _has_wildcard(g[:-2]):
        return s.startswith(g[:-2])
    if g.endswith("*") and not _has_wildcard(g[:-1]):
        rest = s[len(g) - 1:]
        return s.startswith(g[:-1]) and "/" not in rest and "**" not in rest
    return False

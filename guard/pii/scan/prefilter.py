"""One Hyperscan pass over a string tells which recognizers' patterns may match it.

Recognizer selection (:meth:`guard.pii.engine.Analyzer._selected`) asks, per recognizer, whether
any of its patterns matches the string: one search of the recognizer's patterns joined into an
alternation, compiled with ``regex`` and the recognizer's flags. That is ~20 searches per string
with a digit in it, each with the Python call overhead. :class:`Prefilter` compiles every joined
alternation into one Hyperscan database in *prefilter* mode (Hyperscan's documented guarantee:
the compiled pattern matches a superset of what the pattern matches; constructs Hyperscan lacks,
such as look-arounds, are widened) and scans the string once; only the recognizers it reports
are then searched with ``regex``, which decides. The result is the same set of recognizers.

The superset argument needs both engines to read the pattern the same way, so the pass applies
only where they provably do (else the ``regex`` searches run as before):

* the pattern is one of Presidio's predefined recognizers' (reviewed: PCRE syntax only, none
  of ``regex``'s own extensions such as fuzzy matching, which PCRE would read as literals), is
  ASCII (non-ASCII literals and case folding differ between the engines), has no ``regex`` flag
  beyond case-insensitive, multi-line and dot-all, and Hyperscan compiles it in prefilter mode
  on its own;
* the string is ASCII without the separators U+001C-U+001F: on such text ``regex``'s Unicode
  ``\\d``, ``\\w``, ``\\b`` and case folding equal Hyperscan's ASCII ones, and ``\\s`` differs
  only on U+001C-U+001F (Python counts them as white space, PCRE does not).

Caseless, multi-line and dot-all follow the ``regex`` flags of each pattern. Hyperscan is an
optional dependency (x86-64 wheels on PyPI); without it :func:`build` returns ``None``.
``tests/pii/test_prefilter.py`` checks the superset property on generated strings and the
selection against the ``regex`` searches alone.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from typing import Any

import regex

_OUTSIDE = re.compile(r"[^\x00-\x1b\x20-\x7f]")
"""A character that takes a string off the Hyperscan pass (non-ASCII or U+001C-U+001F)."""
_READ_ALIKE = int(regex.IGNORECASE | regex.MULTILINE | regex.DOTALL | regex.UNICODE | regex.ASCII | regex.VERSION0)
"""``regex`` flags both engines interpret alike on the strings the pass applies to (no verbose
mode, no full case folding, no fuzzy matching: a pattern with any other flag is left out)."""


def _hyperscan() -> Any:
    try:
        return importlib.import_module("hyperscan")
    except ImportError:
        return None


def _flags(hs: Any, pattern: Any) -> int:
    flags = int(hs.HS_FLAG_PREFILTER | hs.HS_FLAG_SINGLEMATCH | hs.HS_FLAG_ALLOWEMPTY)
    if pattern.flags & regex.IGNORECASE:
        flags |= hs.HS_FLAG_CASELESS
    if pattern.flags & regex.MULTILINE:
        flags |= hs.HS_FLAG_MULTILINE
    if pattern.flags & regex.DOTALL:
        flags |= hs.HS_FLAG_DOTALL
    return flags


_PER_GROUP = 256
"""Pattern ids are ``group * 256 + position in the group``."""


def _on_match(ident: int, start: int, end: int, flags: int, found: dict[int, list[int]]) -> None:
    found.setdefault(ident // _PER_GROUP, []).append(ident % _PER_GROUP)  # once per id (single-match)


class Prefilter:
    """Which of the given compiled ``regex`` patterns may match a string, in one scan."""

    def __init__(self, hs: Any, database: Any, covered: frozenset[int]) -> None:
        self._hs = hs
        self._database = database
        self._scratch = hs.Scratch(database)
        self.covered = covered
        """Indices of the patterns the database answers for (the others: search them)."""

    @staticmethod
    def applies(text: str) -> bool:
        """Whether :meth:`candidates` may be used for ``text`` (module docstring)."""
        return _OUTSIDE.search(text) is None

    def candidates(self, text: str) -> dict[int, list[int]]:
        """For each covered group with a pattern that may match ``text``, the positions of those
        patterns in the group (a superset of the patterns that match), in no particular order."""
        found: dict[int, list[int]] = {}
        self._database.scan(text.encode("ascii"), match_event_handler=_on_match, context=found,
                            scratch=self._scratch)
        return found


def build(patterns: Sequence[Sequence[Any]]) -> Prefilter | None:
    """A prefilter over groups of compiled ``regex`` patterns, or ``None`` without Hyperscan or
    when no group qualifies. Group ``i`` is covered (its index is in :attr:`Prefilter.covered`)
    when every one of its patterns qualifies (at most 256); :meth:`Prefilter.candidates` then
    reports which of them may match. An empty group is never covered."""
    hs = _hyperscan()
    if hs is None:
        return None
    expressions: list[bytes] = []
    ids: list[int] = []
    flags: list[int] = []
    covered: set[int] = set()
    for index, group in enumerate(patterns):
        sources = [_qualified(hs, pattern) for pattern in group]
        if not group or len(group) > _PER_GROUP or any(source is None for source in sources):
            continue
        covered.add(index)
        for position, (pattern, source) in enumerate(zip(group, sources, strict=True)):
            assert source is not None
            expressions.append(source)
            ids.append(index * _PER_GROUP + position)
            flags.append(_flags(hs, pattern))
    if not expressions:
        return None
    database = hs.Database(mode=hs.HS_MODE_BLOCK)
    database.compile(expressions=expressions, ids=ids, elements=len(expressions), flags=flags)
    return Prefilter(hs, database, frozenset(covered))


def _qualified(hs: Any, pattern: Any) -> bytes | None:
    """The pattern's source for Hyperscan, or ``None`` when it does not qualify (module docstring)."""
    if (not isinstance(pattern.pattern, str) or not pattern.pattern.isascii()
            or pattern.flags & ~_READ_ALIKE):
        return None
    source = pattern.pattern.encode("ascii")
    try:  # compiled alone first: one unsupported pattern must not take the others off
        hs.Database(mode=hs.HS_MODE_BLOCK).compile(expressions=[source], ids=[0], elements=1,
                                                   flags=[_flags(hs, pattern)])
    except hs.error:
        return None
    return source

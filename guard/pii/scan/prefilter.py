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
  beyond case-insensitive, multi-line and dot-all, is at most :data:`MAX_SOURCE` characters
  long, and Hyperscan compiles it in prefilter mode;
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
import threading
from collections.abc import Sequence
from typing import Any

import regex

_OUTSIDE = re.compile(r"[^\x00-\x1b\x20-\x7f]")
"""A character that takes a string off the Hyperscan pass (non-ASCII or U+001C-U+001F)."""
MAX_SOURCE = 2000
"""Longer patterns are left out: Hyperscan's prefilter compilation of the URL recognizer's
(~4,000-character top-level-domain alternations) takes seconds per analyzer process."""
_READ_ALIKE = int(regex.IGNORECASE | regex.MULTILINE | regex.DOTALL | regex.UNICODE | regex.ASCII | regex.VERSION0)
"""``regex`` flags both engines interpret alike on the strings the pass applies to (no verbose
mode, no full case folding, no fuzzy matching: a pattern with any other flag is left out)."""


def _hyperscan() -> Any:
    try:
        return importlib.import_module("hyperscan")
    except ImportError:
        return None


def _flags(hs: Any, pattern: Any) -> int:
    flags = int(hs.HS_FLAG_PREFILTER | hs.HS_FLAG_ALLOWEMPTY)
    if pattern.flags & regex.IGNORECASE:
        flags |= hs.HS_FLAG_CASELESS
    if pattern.flags & regex.MULTILINE:
        flags |= hs.HS_FLAG_MULTILINE
    if pattern.flags & regex.DOTALL:
        flags |= hs.HS_FLAG_DOTALL
    return flags


_PER_GROUP = 256
"""Pattern ids are ``group * 256 + position in the group``."""


def _on_match(ident: int, start: int, end: int, flags: int, found: dict[int, set[int]]) -> None:
    found.setdefault(ident // _PER_GROUP, set()).add(ident % _PER_GROUP)


class Prefilter:
    """Which of the given compiled ``regex`` patterns may match a string, in one pass."""

    def __init__(self, hs: Any, databases: Sequence[Any], covered: frozenset[int]) -> None:
        self._hs = hs
        self._databases = list(databases)
        self._local = threading.local()
        """Scratch space per thread (Hyperscan's may not be shared by concurrent scans)."""
        self.covered = covered
        """Indices of the groups the databases answer for (the others: search them)."""

    def _scans(self) -> list[tuple[Any, Any]]:
        scans: list[tuple[Any, Any]] | None = getattr(self._local, "scans", None)
        if scans is None:
            scans = self._local.scans = [(db, self._hs.Scratch(db)) for db in self._databases]
        return scans

    @staticmethod
    def applies(text: str) -> bool:
        """Whether :meth:`candidates` may be used for ``text`` (module docstring)."""
        return _OUTSIDE.search(text) is None

    def candidates(self, text: str) -> dict[int, set[int]]:
        """For each covered group with a pattern that may match ``text``, the positions of those
        patterns in the group (a superset of the patterns that match), in no particular order."""
        found: dict[int, set[int]] = {}
        data = text.encode("ascii")
        for database, scratch in self._scans():
            database.scan(data, match_event_handler=_on_match, context=found, scratch=scratch)
        return found


def build(patterns: Sequence[Sequence[Any]]) -> Prefilter | None:
    """A prefilter over groups of compiled ``regex`` patterns, or ``None`` without Hyperscan or
    when no group qualifies. Group ``i`` is covered (its index is in :attr:`Prefilter.covered`)
    when every one of its patterns qualifies (at most 256); :meth:`Prefilter.candidates` then
    reports which of them may match. An empty group is never covered.

    One database holds every covered pattern. Hyperscan's single-match mode is not used: it
    made the compilation of Presidio's patterns ~3x slower (~0.75 s per analyzer process
    against ~0.25 s); repeated reports of a pattern are merged in the callback instead.
    """
    hs = _hyperscan()
    if hs is None:
        return None
    groups: dict[int, list[tuple[bytes, int, int]]] = {}
    for index, group in enumerate(patterns):
        sources = [_qualified(pattern) for pattern in group]
        if not group or len(group) > _PER_GROUP or any(source is None for source in sources):
            continue
        groups[index] = [(source, index * _PER_GROUP + position, _flags(hs, pattern))
                         for position, (pattern, source) in enumerate(zip(group, sources, strict=True))
                         if source is not None]
    try:
        database = _compile(hs, [entry for entries in groups.values() for entry in entries])
    except hs.error:  # a pattern Hyperscan cannot read: find its group, leave it to its searches
        for index, entries in list(groups.items()):
            try:
                _compile(hs, entries)
            except hs.error:
                del groups[index]
        database = _compile(hs, [entry for entries in groups.values() for entry in entries]) if groups else None
    if database is None:
        return None
    return Prefilter(hs, [database], frozenset(groups))


def _compile(hs: Any, entries: Sequence[tuple[bytes, int, int]]) -> Any:
    if not entries:
        return None
    database = hs.Database(mode=hs.HS_MODE_BLOCK)
    database.compile(expressions=[e[0] for e in entries], ids=[e[1] for e in entries], elements=len(entries),
                     flags=[e[2] for e in entries])
    return database


def _qualified(pattern: Any) -> bytes | None:
    """The pattern's source for Hyperscan, or ``None`` when it does not qualify (module docstring)."""
    if (not isinstance(pattern.pattern, str) or not pattern.pattern.isascii()
            or pattern.flags & ~_READ_ALIKE or len(pattern.pattern) > MAX_SOURCE):
        return None
    return pattern.pattern.encode("ascii")

"""What goes to a PII analyzer and what comes back; no Presidio here.

The guard process walks payloads, resolves rules and rewrites values; the analysis itself
(Presidio, :mod:`guard.pii.engine`) may run in other processes (:mod:`guard.pii.pool`).
Between the two travel only plain values: an :data:`Item` (a string and the words of the
JSON key holding it) and, per item, a list of :class:`Detection`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import regex

Item = tuple[str, tuple[str, ...]]
"""A string to analyze and its context words (:func:`context_words` of its JSON path)."""


class Detection(NamedTuple):
    """One analyzer finding: entity type, span ``[start, end)`` in the string, score."""

    entity_type: str
    start: int
    end: int
    score: float


class _Finds(Protocol):
    entity_type: str
    start: int
    end: int
    score: float


class TextAnalyzer(Protocol):
    """What :func:`analyze_items` needs: :meth:`guard.pii.engine.Analyzer.analyze`."""

    def analyze(self, text: str, context: Sequence[str] | None = None) -> Sequence[_Finds]: ...


def analyze_items(analyzer: TextAnalyzer, items: Sequence[Item]) -> list[list[Detection]]:
    """The detections for each item, in order."""
    return [[Detection(r.entity_type, r.start, r.end, float(r.score)) for r in analyzer.analyze(text, words)]
            for text, words in items]


_CAMEL = regex.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_INDEX = regex.compile(r"(\[\d+\]|<json>|<base64>)+$")
_LAST_KEY = regex.compile(r"(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[(\"(?:[^\"\\]|\\.)*\")\])$")
_WORD_SPLIT = regex.compile(r"[^\p{L}\p{N}]+")
_IDENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ASCII_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


_CACHED_PATH_LENGTH = 256


def context_words(path: str) -> tuple[str, ...]:
    """:func:`_context_words` of ``path``, memoized for paths of at most 256 characters.

    Runs for every string of every message, and the paths of a tool's results repeat from
    call to call; long (attacker-chosen) paths are not kept.
    """
    if len(path) > _CACHED_PATH_LENGTH:
        return _context_words(path)
    return _cached_context_words(path)


def _context_words(path: str) -> tuple[str, ...]:
    """Words of the JSON key holding a leaf: ``$.a.card_number`` -> ``("card", "number")``.

    List indices and ``<json>``/``<base64>`` markers are skipped (``$.phones[2]`` ->
    ``("phones",)``); camelCase is split (``homePhone`` -> ``("home", "phone")``). Runs for
    every leaf, so the common shapes (a path ending in ``.identifier``) are handled with
    string operations; :func:`_context_words_regex` is the definition and handles the rest.
    """
    if path.endswith("\n"):
        return _context_words_regex(path)  # ``$`` also matches before a final newline
    end = len(path)
    while True:
        if path.endswith("]", 0, end):
            opening = path.rfind("[", 0, end - 1)
            if opening < 0 or not path[opening + 1:end - 1].isdecimal():  # ``\d`` is Nd, as isdecimal
                break
            end = opening
        elif path.endswith("<json>", 0, end):
            end -= len("<json>")
        elif path.endswith("<base64>", 0, end):
            end -= len("<base64>")
        else:
            break
    if path.endswith("\n", 0, end):
        return _context_words_regex(path)
    start = end
    while start > 0 and path[start - 1] in _IDENT_CHARS:
        start -= 1
    if start == end:
        return _context_words_regex(path[:end]) if path.endswith('"]', 0, end) else ()
    if start == 0 or path[start - 1] != "." or path[start].isdigit():
        return ()
    key = path[start:end]
    if not key.islower():
        key = _ASCII_CAMEL.sub(" ", key).lower()
    return tuple(w for w in key.replace("_", " ").split(" ") if w)


_cached_context_words = functools.lru_cache(maxsize=4096)(_context_words)


def _context_words_regex(path: str) -> tuple[str, ...]:
    trimmed = _INDEX.sub("", path)
    m = _LAST_KEY.search(trimmed)
    if m is None:
        return ()
    key = m.group(1)
    if key is None:
        key = str(json.loads(m.group(2)))
    spaced = _CAMEL.sub(" ", key)
    return tuple(w for w in _WORD_SPLIT.split(spaced.lower()) if w)

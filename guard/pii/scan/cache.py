"""A verdict cache: the detections of strings analysed before, keyed by a keyed digest.

Tool results repeat the same strings from call to call (status words, dates, cities, the
same customer's phone number), and analysing a string is a pure function of the string,
its context words and the analyzer. The cache maps ``BLAKE2b(key, string, context)`` to the
detections (entity type, span, score) found in it, so a repeated string costs one digest
instead of an analysis.

Security properties:

* **No values in memory.** Neither the string nor any part of it is kept: the key is a
  128-bit keyed digest and the value holds only entity types, offsets and scores (what
  :class:`~guard.pii.analysis.Detection` carries to guard's process anyway).
* **No collisions by construction.** The digest key is random per process and never leaves
  it, so nobody can craft a string that collides with another one to borrow its (empty)
  verdict; an accidental 128-bit collision is negligible.
* **Bounded.** At most ``capacity`` entries (least recently used first out); strings longer
  than :data:`MAX_CACHED_TEXT` characters and results with more than
  :data:`MAX_CACHED_DETECTIONS` detections are analysed every time (large strings rarely
  repeat, and a bound per entry keeps the memory bound honest).

Whether it pays depends on the traffic: ``bench/cache_bench.py`` measures it on a stream
where nothing repeats and on a repetitive one.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence

from guard.pii.analysis import Detection, Item, TextAnalyzer, analyze_items

MAX_CACHED_TEXT = 8192
"""Longest string (characters) whose verdict is cached."""
MAX_CACHED_DETECTIONS = 32
"""Most detections a cached verdict may hold."""
DEFAULT_CAPACITY = 65536
"""Entries per analyzer process (a few MB)."""


class VerdictCache:
    """LRU of detections per (string, context words), keyed by a keyed BLAKE2b digest."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, key: bytes | None = None) -> None:
        self.capacity = capacity
        self._key = key if key is not None else os.urandom(32)
        self._entries: OrderedDict[bytes, tuple[Detection, ...]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def digest(self, text: str, words: Sequence[str]) -> bytes:
        """The cache key of ``text`` with context ``words`` (lone surrogates included)."""
        h = hashlib.blake2b(key=self._key, digest_size=16)
        h.update(text.encode("utf-8", "surrogatepass"))
        for word in words:
            h.update(b"\x00")
            h.update(word.encode("utf-8", "surrogatepass"))
        return h.digest()

    def analyze(self, analyzer: TextAnalyzer, items: Sequence[Item]) -> list[list[Detection]]:
        """:func:`~guard.pii.analysis.analyze_items`, answering repeated items from the cache."""
        if self.capacity <= 0:
            return analyze_items(analyzer, items)
        out: list[list[Detection]] = []
        entries = self._entries
        for text, words in items:
            if len(text) > MAX_CACHED_TEXT:
                out.append(analyze_items(analyzer, [(text, words)])[0])
                continue
            key = self.digest(text, words)
            cached = entries.get(key)
            if cached is not None:
                entries.move_to_end(key)
                self.hits += 1
                out.append(list(cached))
                continue
            self.misses += 1
            found = analyze_items(analyzer, [(text, words)])[0]
            if len(found) <= MAX_CACHED_DETECTIONS:
                entries[key] = tuple(found)
                if len(entries) > self.capacity:
                    entries.popitem(last=False)
            out.append(found)
        return out

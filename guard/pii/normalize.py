"""The text detection sees, and the way back to the original: pure functions, no I/O.

Personal data arrives encoded in ways pattern recognizers do not read: full-width,
mathematical or Arabic-Indic digits, zero-width characters or soft hyphens inside a
number, HTML entities (``alice&#64;example.com``), percent escapes (``alice%40example.com``),
JSON escapes left in text at any depth (``\\u0040``, ``\\\\u0040``). :func:`normalize`
builds a :class:`View`: the decoded text plus, for every character of it, the span of the
original it came from, so a detection in the view rewrites the *original* span.

Steps, in order:

1. Escapes (up to three rounds, so ``&amp;#64;`` and ``%2540`` decode too): JSON
   ``\\uXXXX`` (surrogate pairs joined) and ``\\"`` ``\\/`` behind any number of
   backslashes; HTML character references (named, decimal, hexadecimal); runs of
   percent escapes that decode as UTF-8.
2. Characters: format characters (Unicode category Cf: zero-width space/joiners, word
   joiner, soft hyphen, BOM, bidi marks) are dropped; every decimal digit of any script
   becomes its ASCII digit; dashes (Pd) become ``-`` and spaces (Zs) a space; anything
   else non-ASCII is NFKC-normalized (full-width letters and signs, ligatures).
3. In a word holding both ``/`` and ``@``, ``/`` becomes a space: the segments of a path
   or URI are words of their own (``crm://customers/alice@example.com``).

Plain ASCII without ``%``, ``&`` or ``\\`` is returned as is without copying (most
strings). Base64 runs are not decoded here: :mod:`guard.pii.walker` walks them as text
of their own, so their rewrite can be re-encoded.
"""

from __future__ import annotations

import html.entities
import re
import unicodedata

_ESCAPE = re.compile(
    r"(?P<pair>\\+u(?P<hi>[dD][89abAB][0-9a-fA-F]{2})\\+u(?P<lo>[dD][c-fC-F][0-9a-fA-F]{2}))"
    r"|\\+u(?P<u>[0-9a-fA-F]{4})"
    r"|\\+(?P<q>[\"/'])"
    r"|&(?:#(?P<dec>[0-9]{1,7})|#[xX](?P<hex>[0-9a-fA-F]{1,6})|(?P<name>[A-Za-z][A-Za-z0-9]{1,31}));"
    r"|(?P<pct>(?:%[0-9A-Fa-f]{2})+)"
)
_MAYBE_ESCAPED = re.compile(r"[\\&%]")
_URI_WITH_AT = re.compile(r"[^\s/]*/[^\s]*@[^\s]*|[^\s]*@[^\s/]*/[^\s]*")
_ROUNDS = 3


class View:
    """Normalized ``text`` and, per character, the original ``[start, end)`` it came from.

    Made for every leaf: a plain class with its own ``__init__``, which mypyc compiles into a
    native class (a frozen dataclass's ``__init__`` is interpreted code, ~4,000 instructions a
    view). Treat it as immutable.
    """

    original: str
    text: str
    starts: tuple[int, ...] | None
    """``None``: the view is the original (identity)."""
    ends: tuple[int, ...] | None

    def __init__(self, original: str, text: str, starts: tuple[int, ...] | None = None,
                 ends: tuple[int, ...] | None = None) -> None:
        self.original = original
        self.text = text
        self.starts = starts
        self.ends = ends

    @property
    def identity(self) -> bool:
        return self.starts is None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span a ``[start, end)`` of :attr:`text` covers (``start < end``)."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]

    def fields(self) -> tuple[str, str, tuple[int, ...] | None, tuple[int, ...] | None]:
        return self.original, self.text, self.starts, self.ends

    def __eq__(self, other: object) -> bool:
        return isinstance(other, View) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash(self.fields())

    def __repr__(self) -> str:
        return f"View(original={self.original!r}, text={self.text!r}, starts={self.starts!r}, ends={self.ends!r})"


def _decode(match: re.Match[str]) -> str | None:
    if match.group("pair") is not None:
        hi, lo = int(match.group("hi"), 16), int(match.group("lo"), 16)
        return chr(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
    if match.group("u") is not None:
        code = int(match.group("u"), 16)
        return None if 0xD800 <= code <= 0xDFFF else chr(code)
    if match.group("q") is not None:
        return match.group("q")
    if match.group("dec") is not None or match.group("hex") is not None:
        code = int(match.group("dec")) if match.group("dec") is not None else int(match.group("hex"), 16)
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else None
    if match.group("name") is not None:
        return html.entities.html5.get(match.group("name") + ";")
    raw = bytes(int(h, 16) for h in match.group("pct")[1:].split("%"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _unescape(text: str, starts: list[int], ends: list[int]) -> tuple[str, list[int], list[int]] | None:
    """One round of escape decoding over ``text`` (whose characters map to ``starts``/``ends``)."""
    out: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    cursor = 0
    changed = False
    for m in _ESCAPE.finditer(text):
        decoded = _decode(m)
        if decoded is None or decoded == m.group(0):
            continue
        changed = True
        out.append(text[cursor:m.start()])
        new_starts.extend(starts[cursor:m.start()])
        new_ends.extend(ends[cursor:m.start()])
        start, end = starts[m.start()], ends[m.end() - 1]
        out.append(decoded)
        new_starts.extend([start] * len(decoded))
        new_ends.extend([end] * len(decoded))
        cursor = m.end()
    if not changed:
        return None
    out.append(text[cursor:])
    new_starts.extend(starts[cursor:])
    new_ends.extend(ends[cursor:])
    return "".join(out), new_starts, new_ends


def _characters(text: str, starts: list[int], ends: list[int]) -> tuple[str, list[int], list[int]] | None:
    if text.isascii():
        return None
    out: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    changed = False
    for ch, start, end in zip(text, starts, ends, strict=True):
        if ch.isascii():
            out.append(ch)
            new_starts.append(start)
            new_ends.append(end)
            continue
        category = unicodedata.category(ch)
        if category == "Cf":
            changed = True
            continue
        digit = unicodedata.decimal(ch, None)
        if digit is not None:
            mapped = str(digit)
        elif category == "Pd":
            mapped = "-"
        elif category == "Zs":
            mapped = " "
        else:
            mapped = unicodedata.normalize("NFKC", ch)
        changed = changed or mapped != ch
        out.append(mapped)
        new_starts.extend([start] * len(mapped))
        new_ends.extend([end] * len(mapped))
    if not changed:
        return None
    return "".join(out), new_starts, new_ends


def normalize(text: str) -> View:
    """The :class:`View` detection runs on (the identity view when nothing decodes)."""
    escaped = _MAYBE_ESCAPED.search(text) is not None
    if not escaped and text.isascii() and not ("@" in text and "/" in text):
        return View(text, text)
    current = text
    starts = list(range(len(text)))
    ends = list(range(1, len(text) + 1))
    changed = False
    if escaped:
        for _ in range(_ROUNDS):
            step = _unescape(current, starts, ends)
            if step is None:
                break
            current, starts, ends = step
            changed = True
    step = _characters(current, starts, ends)
    if step is not None:
        current, starts, ends = step
        changed = True
    if "@" in current and "/" in current:  # a path or URI segment ends at "/": crm://customers/a@b.example
        spaced = _URI_WITH_AT.sub(lambda m: m.group(0).replace("/", " "), current)
        changed = changed or spaced != current
        current = spaced
    if not changed:
        return View(text, text)
    return View(text, current, tuple(starts), tuple(ends))

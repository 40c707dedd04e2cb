"""Hostile JSON texts for the parser properties: lone surrogates, numbers past a double, big integers.

A value tree is drawn with :data:`values` and written as JSON text by :func:`encode`, which
chooses per string whether to escape (``\\ud800`` for a lone surrogate) and writes
:class:`Raw` number tokens verbatim (``1e400``, ``123456789012345678901234567890``), so the
frames hold exactly what an attacker can put on the wire. :func:`forwardable` says whether
guard must accept such a value (every transport can carry it unchanged) and :func:`same`
compares decoded values type-exactly (``1`` is not ``1.0``, ``-0.0`` is not ``0.0``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st


class Raw(str):
    """A JSON number token written verbatim."""


RAW_NUMBERS = [Raw(t) for t in ("1e400", "-1E+999", "1e-400", "123456789012345678901234567890",
                                "-98765432109876543210987654321.5e3", "-0", "-0.0", "0.1e1", "2.5E-3",
                                "1.7976931348623157e308", "4.9e-324")]

characters = st.characters(codec="utf-8") | st.characters(categories=["Cs"])  # Cs: lone surrogates
strings = st.text(characters, max_size=6)
leaves = (st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats(allow_nan=False, allow_infinity=False)
          | strings | st.sampled_from(RAW_NUMBERS))
values = st.recursive(leaves, lambda children: st.lists(children, max_size=3)
                      | st.dictionaries(strings, children, max_size=3), max_leaves=12)


def encode(value: Any, raw_utf8: bool = False) -> str:
    """JSON text for ``value``; strings without surrogates are written as raw UTF-8 when ``raw_utf8``."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(value)  # the only way to put a lone surrogate on a UTF-8 wire
        return json.dumps(value, ensure_ascii=not raw_utf8)
    if isinstance(value, dict):
        return "{" + ",".join(f"{encode(k, raw_utf8)}:{encode(v, raw_utf8)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v, raw_utf8) for v in value) + "]"
    return json.dumps(value)


def forwardable(decoded: Any) -> bool:
    """True when no string holds a lone surrogate and no number overflowed a double."""
    if isinstance(decoded, float):
        return math.isfinite(decoded)
    if isinstance(decoded, str):
        try:
            decoded.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(decoded, dict):
        return all(forwardable(k) and forwardable(v) for k, v in decoded.items())
    if isinstance(decoded, list):
        return all(forwardable(v) for v in decoded)
    return True


def same(a: Any, b: Any) -> bool:
    """Type-exact equality of decoded JSON values."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def call_frame(request_id: int, arguments: Any, raw_utf8: bool = False) -> str:
    """A ``tools/call`` frame whose ``arguments`` are ``arguments`` as written by :func:`encode`."""
    return ('{"jsonrpc":"2.0","id":' + str(request_id) + ',"method":"tools/call","params":{"name":"echo",'
            '"arguments":' + encode(arguments, raw_utf8) + '}}')

"""Values of JSON parsed from inside a string that plain ``dict``/``float`` would lose.

Kept apart from :mod:`guard.pii.walker` because the walker is compiled with mypyc
(``setup.py``), and a compiled module cannot define subclasses of ``list`` or ``str``; these
stay ordinary Python classes that the compiled walker creates and tests with ``isinstance``.
"""

from __future__ import annotations

from typing import Any


class Pairs(list[tuple[str, Any]]):
    """A JSON object with duplicate keys, kept as its pairs so nothing is lost on re-serialization."""


class Raw(str):
    """A JSON number text (non-integer) kept verbatim."""

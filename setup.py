"""Build hook: compile guard's hot PII modules with mypyc (setuptools reads the rest from pyproject.toml).

mypyc comes from the build requirements (``pyproject.toml`` ``[build-system]``) and needs only
gcc and the Python headers, so ``pip install .`` / ``pip install -e .`` compiles on a fresh
machine with what README command 1 assumes. The compiled modules are the same typed Python
sources: each stays importable as plain Python, and ``tests/pii/test_compiled.py`` holds the
compiled and the interpreted version equal on generated inputs (and fails if the compiled one
is missing or older than its source).

Without a compiler (or without mypy, as in the Docker image's isolated-free build) the
extensions are optional: the build warns and guard runs the same modules interpreted.
``GUARD_PURE_PYTHON=1`` skips compilation on purpose.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import setup

COMPILED = ["guard/pii/scan/phonevalid.py"]
"""Modules compiled with mypyc (each keeps its plain-Python behaviour; see the tests)."""

ext_modules: list[Any] = []
if os.environ.get("GUARD_PURE_PYTHON") != "1":
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("warning: mypy/mypyc not available: guard's PII scanner modules stay plain Python")
    else:
        ext_modules = mypycify(COMPILED, opt_level="3")
        for extension in ext_modules:
            extension.optional = True  # a build without gcc falls back to the plain modules

setup(ext_modules=ext_modules)

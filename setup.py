"""Build hook: compile guard's hot modules with mypyc (setuptools reads the rest from pyproject.toml).

mypyc comes from the build requirements (``pyproject.toml`` ``[build-system]``) and needs only
gcc and the Python headers, so ``pip install .`` / ``pip install -e .`` compiles on a fresh
machine with what README command 1 assumes. The compiled modules are the same typed Python
sources: each stays importable as plain Python, and ``tests/pii/test_compiled.py`` checks that
every one is compiled and current, and holds the compiled and the interpreted version equal on
generated inputs.

What is compiled, and why: the PII stage's own work per message (the walker, normalization
and label evidence run on every string of every message; the plan and rewrite of
:mod:`guard.pii.protect`) and the per-call work with the PII stage off (JSON-RPC parsing, the
per-message context classes of :mod:`guard.context`, the relay and the session's request table,
the stage chain, the authenticate, authorize and audit stages, the policy engine's decision,
the audit record builder, its canonical serialization, the audit log's loop side and its file
sink, and the per-message metric series). Modules were kept only where compiling measurably
lowered the instructions per call and the whole suite passes on them (``bench/README.md``,
"What was optimized", fifth to seventh rounds, has the measurements and what was tried and
not kept). Kept out of the compiled modules, and why: the ``runtime_checkable`` protocols of
:mod:`guard.pipeline.stage` (mypyc cannot compile them), ``OSError`` subclasses
(:class:`guard.audit.checkpoint.CheckpointFileError`: not a native class), the rest of
``guard/metrics.py`` (``/metrics`` failed under mypyc; its per-message part is
:mod:`guard.metrics_flow`), and :mod:`guard.limits` (``guard.cluster.breaker`` subclasses its
breaker in interpreted code, which a native class forbids).

Without a compiler (or without mypy, as in the Docker image's isolated-free build) the
extensions are optional: the build warns and guard runs the same modules interpreted.
``GUARD_PURE_PYTHON=1`` skips compilation on purpose.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import setup

COMPILED = [
    "guard/pii/scan/phonevalid.py",
    "guard/pii/walker.py",
    "guard/pii/normalize.py",
    "guard/pii/evidence.py",
    "guard/pii/protect.py",
    "guard/jsonrpc.py",
    "guard/audit/schema.py",
    "guard/relay.py",
    "guard/session.py",
    "guard/pipeline/audit.py",
    "guard/pipeline/authorize.py",
    "guard/pipeline/authenticate.py",
    "guard/audit/log.py",
    "guard/audit/canonical.py",
    "guard/policy/engine.py",
    "guard/context.py",
    "guard/pipeline/chain.py",
    "guard/metrics_flow.py",
    "guard/audit/sink.py",
]
"""Modules compiled with mypyc (each keeps its plain-Python behaviour; see the tests)."""

BUILD_CHECK = [
    "--follow-imports=silent",
    "--ignore-missing-imports",
    "--no-warn-return-any",
    "--allow-subclassing-any",
    "--no-warn-unused-ignores",
]
"""mypy options for mypyc's own type check. The isolated build environment holds only the build
requirements, not guard's dependencies (orjson, cryptography, regex, presidio...): their types
are unknown there (``Any``) and the modules the compiled ones import are read for their types
without reporting their errors. The strict check of all of ``guard/`` is ``mypy`` in CI, with
every dependency installed."""

ext_modules: list[Any] = []
if os.environ.get("GUARD_PURE_PYTHON") != "1":
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("warning: mypy/mypyc not available: guard's compiled modules stay plain Python")
    else:
        # One extension per module: gcc compiles small files in parallel (build_ext below). As one
        # group the generated C was a single 3.3 MB file and `pip install -e .` took 230 s instead of 28 s.
        ext_modules = mypycify([*BUILD_CHECK, *COMPILED], opt_level="3", separate=True)
        for extension in ext_modules:
            extension.optional = True  # a build without gcc falls back to the plain modules

setup(ext_modules=ext_modules, options={"build_ext": {"parallel": os.cpu_count() or 1}})

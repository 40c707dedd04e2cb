"""The mypyc-compiled modules (``setup.py`` ``COMPILED``) are in use, current, and equal to
their plain-Python source on generated inputs.

``pip install -e .`` compiles them next to their sources; Python then imports the compiled
module. A compiled module older than its source would silently test old code, so that fails
here too (rebuild with ``pip install -e .``). ``GUARD_PURE_PYTHON=1`` (set when building and
testing without a compiler) skips the in-use checks; equality is then trivial.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings

from guard.pii.scan import phonevalid
from tests.pii.machine_data import PRESIDIO_REGIONS
from tests.pii.test_phonevalid import OTHER_REGIONS, plain_candidates, plus_candidates

PURE = os.environ.get("GUARD_PURE_PYTHON") == "1"


def plain_source(module: ModuleType) -> ModuleType:
    """The module's ``.py`` source, imported under another name as plain Python."""
    source = Path(module.__file__ or "").with_name(module.__name__.rsplit(".", 1)[1] + ".py")
    spec = importlib.util.spec_from_file_location(f"_plain_{module.__name__.replace('.', '_')}", source)
    assert spec is not None and spec.loader is not None
    plain = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = plain
    spec.loader.exec_module(plain)
    return plain


PLAIN = plain_source(phonevalid)
COMPILED_VALIDITY = phonevalid.PhoneValidity()
PLAIN_VALIDITY = PLAIN.PhoneValidity()


@pytest.mark.skipif(PURE, reason="GUARD_PURE_PYTHON=1: built without compiling")
def test_scanner_modules_are_compiled_and_not_older_than_their_source() -> None:
    compiled = Path(phonevalid.__file__ or "")
    assert compiled.suffix == ".so", f"{compiled.name}: not compiled (pip install -e . builds it with mypyc)"
    source = compiled.with_name("phonevalid.py")
    assert compiled.stat().st_mtime >= source.stat().st_mtime, "stale compiled module: run pip install -e ."
    assert PLAIN.__file__ == str(source) and not PLAIN.__file__.endswith(".so")


@settings(max_examples=1000, deadline=None)
@given(plain_candidates())
def test_compiled_phone_validity_equals_its_plain_python_source(candidate: str) -> None:
    digits = phonevalid.plain_digits(candidate)
    assert digits == PLAIN.plain_digits(candidate)
    if digits is None:
        return
    for region in PRESIDIO_REGIONS + OTHER_REGIONS:
        assert COMPILED_VALIDITY.verdict(region, digits) == PLAIN_VALIDITY.verdict(region, digits), (region, candidate)


@settings(max_examples=500, deadline=None)
@given(plus_candidates())
def test_compiled_plus_verdict_equals_its_plain_python_source(candidate: str) -> None:
    digits = phonevalid.plus_digits(candidate)
    assert digits == PLAIN.plus_digits(candidate)
    if digits is None:
        return
    assert COMPILED_VALIDITY.plus_parse(digits) == PLAIN_VALIDITY.plus_parse(digits), candidate
    assert COMPILED_VALIDITY.plus_verdict(digits) == PLAIN_VALIDITY.plus_verdict(digits), candidate

"""The mypyc-compiled modules (``setup.py`` ``COMPILED``) are in use, current, and equal to
their plain-Python source on generated inputs.

``pip install -e .`` compiles them next to their sources; Python then imports the compiled
module. A compiled module older than its source would silently test old code, so that fails
here too (rebuild with ``pip install -e .``). ``GUARD_PURE_PYTHON=1`` (set when building and
testing without a compiler) skips the in-use checks; equality is then trivial.

The rest of the suite runs on the compiled modules; the plain sources are what runs where no
compiler was available (and what the Docker image runs), so each compiled module is held
equal to its source here: the phone validity on generated digit runs, the walker on generated
MCP results (what it visits, and what it rewrites), the whole protection of generated results
(findings, rewritten payload, rejection, protected target) and JSON-RPC parsing on generated
messages.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard import jsonrpc
from guard.crypto.aead import KeyRing
from guard.jsonrpc import Kind
from guard.pii import protect, walker
from guard.pii.engine import Analyzer
from guard.pii.rules import PIIRules
from guard.pii.scan import phonevalid
from tests.pii.conftest import FIXED_SECRET, fixed_random
from tests.pii.machine_data import PRESIDIO_REGIONS
from tests.pii.test_phonevalid import OTHER_REGIONS, plain_candidates, plus_candidates
from tests.pii.test_walker import _DOCS, _payloads

PURE = os.environ.get("GUARD_PURE_PYTHON") == "1"
ROOT = Path(__file__).resolve().parents[2]


def compiled_modules() -> list[str]:
    """``setup.py``'s ``COMPILED`` list, as module names."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets):
            paths = ast.literal_eval(node.value)
            return [p.removesuffix(".py").replace("/", ".") for p in paths]
    raise AssertionError("setup.py has no COMPILED list")


@pytest.mark.parametrize("module", compiled_modules())
def test_compiled_functions_never_rebind_an_exception_name_to_another_type(module: str) -> None:
    """mypyc types an ``except ... as name`` variable once per function, from its first handler.

    A second handler binding the same name to another exception type then raises ``TypeError``
    in the compiled module when that exception is caught (the relay closed sessions with
    "internal error" on a duplicate request id that way), while the plain module works. The
    rule is kept simple: each handler of a function that catches different types binds its own
    name (even where the first type happens to cover the later ones).
    """
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    clashes = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            bound: dict[str, set[str]] = {}
            for node in ast.walk(fn):
                if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                    bound.setdefault(node.name, set()).add(ast.unparse(node.type))
            clashes += [f"{fn.name}: {name} {sorted(types)}" for name, types in bound.items() if len(types) > 1]
    assert not clashes, f"{module}: one except name for several exception types: {clashes}"


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
PLAIN_WALKER = plain_source(walker)
PLAIN_JSONRPC = plain_source(jsonrpc)
PLAIN_PROTECT = plain_source(protect)


@pytest.mark.skipif(PURE, reason="GUARD_PURE_PYTHON=1: built without compiling")
@pytest.mark.parametrize("name", compiled_modules())
def test_compiled_modules_are_in_use_and_not_older_than_their_source(name: str) -> None:
    module = importlib.import_module(name)
    compiled = Path(module.__file__ or "")
    assert compiled.suffix == ".so", f"{compiled.name}: not compiled (pip install -e . builds it with mypyc)"
    source = compiled.with_name(name.rsplit(".", 1)[1] + ".py")
    assert compiled.stat().st_mtime >= source.stat().st_mtime, "stale compiled module: run pip install -e ."


def test_no_module_is_compiled_that_setup_py_does_not_compile() -> None:
    """A module dropped from ``COMPILED`` leaves its old ``.so`` beside the source in a working
    tree, and Python would keep importing that old build."""
    compiled = {".".join(p.relative_to(ROOT).with_suffix("").with_suffix("").parts).removesuffix("__mypyc")
                for p in (ROOT / "guard").rglob("*.so")}  # mypyc puts each module's runtime beside it
    assert compiled <= set(compiled_modules()), "stale extension modules: delete them and run pip install -e ."


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


def _walk_with(module: ModuleType, payload: dict[str, Any]) -> tuple[list[tuple[Any, ...]], Any, Any]:
    leaves: list[tuple[Any, ...]] = []

    def visit(leaf: Any) -> str | None:
        leaves.append(leaf.fields())
        return f"<{len(leaves)}>" if len(leaves) % 3 == 0 else None

    changed = module.transform(payload, Kind.RESULT, "tools/call", True, visit, True)
    shape = module.walk(payload, lambda leaf: None, True)
    edits = {i: f"[{i}]" for i in range(0, len(leaves), 2)}
    return leaves, changed, module.rewrite(payload, edits, shape, True)


@settings(max_examples=300, deadline=None)
@given(_payloads())
def test_compiled_walker_equals_its_plain_python_source(payload: dict[str, Any]) -> None:
    assert _walk_with(walker, payload) == _walk_with(PLAIN_WALKER, payload)


@settings(max_examples=300, deadline=None)
@given(_DOCS, st.sampled_from(["request", "notification", "result", "error", "junk"]))
def test_compiled_jsonrpc_parsing_equals_its_plain_python_source(doc: Any, shape: str) -> None:
    payload: Any = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"arguments": {"a": doc}}}
    if shape == "notification":
        payload.pop("id")
    elif shape == "result":
        payload = {"jsonrpc": "2.0", "id": "x", "result": {"structuredContent": {"a": doc}}}
    elif shape == "error":
        payload = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "m", "data": doc}}
    elif shape == "junk":
        payload = doc
    frame = json.dumps(payload)
    outcomes = []
    for module in (jsonrpc, PLAIN_JSONRPC):
        try:
            message = module.parse(frame)
            outcomes.append((message.kind.name, message.payload, message.raw_size, message.id, message.method,
                             module.serialize(message)))
        except Exception as exc:  # the same refusal is what is compared
            outcomes.append((type(exc).__name__, str(exc)))
    assert outcomes[0] == outcomes[1]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(_payloads(), st.booleans())
def test_compiled_protection_equals_its_plain_python_source(analyzer: Analyzer, rules: PIIRules,
                                                           payload: dict[str, Any], to_client: bool) -> None:
    ring = KeyRing(primary="k1", secrets={"k1": FIXED_SECRET})
    outcomes = []
    for module in (protect, PLAIN_PROTECT):
        protector = module.Protector(analyzer, rules, ring, "d", random=fixed_random)
        outcome = protector.protect(payload, Kind.RESULT, "tools/call", to_client, "demo", "t",
                                    target="lookup v@example.com")
        rejection = outcome.rejection
        outcomes.append((outcome.payload, outcome.findings, outcome.target,
                         None if rejection is None else (rejection.code, rejection.reason)))
    assert outcomes[0] == outcomes[1]

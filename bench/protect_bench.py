"""Whole-message PII protection per message, this tree against another checkout, same machine, same run.

    .venv/bin/python bench/protect_bench.py                        # this tree only
    git archive aa2b5dd^1 | tar -x -C /tmp/guard-before-13         # guard before issue 13
    .venv/bin/python bench/protect_bench.py --other /tmp/guard-before-13

Issue 13's speed target ("no slower than today per message on the existing PII benchmarks:
the wider walk must be paid for by the cheaper candidate search"): times
:meth:`~guard.pii.protect.Protector.protect` (walk, normalization, analysis in this process,
rules, rewrite) on the three tool results of ``bench/pii_bench.py --speed`` (PII-free docs
search, PII-free tickets, tickets with 5 PII values), each tree with its own
``policies/pii.toml`` as shipped. CPU time per message, best of ``--repeat`` batches; with
``--other DIR`` the two trees alternate in separate processes for ``--rounds`` rounds and the
best of each is kept (the machine is shared; the best is the least disturbed).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BATCH = 100


def measure(root: Path, repeat: int) -> dict[str, float]:
    """Run in a fresh process whose guard is ``root``'s (:func:`bench.alternate.measure_in`)."""
    sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location("other_pii_bench", root / "bench" / "pii_bench.py")
    assert spec is not None and spec.loader is not None
    pii_bench = importlib.util.module_from_spec(spec)  # that tree's payloads, and guard from that tree
    spec.loader.exec_module(pii_bench)
    from bench.alternate import best_ms
    from guard import configtools as ct
    from guard.crypto.aead import KeyRing
    from guard.jsonrpc import Kind
    from guard.pii.pool import AnalyzerSpec
    from guard.pii.protect import Protector
    from guard.pii.rules import load_rules

    rules = load_rules(root / "policies" / "pii.toml", ct.Problems())
    protector = Protector(AnalyzerSpec.for_rules(rules).build(), rules, KeyRing("bench", {"bench": bytes(32)}), "bench")
    out = {}
    for name, payload in (("PII-free docs search", pii_bench._docs()), ("PII-free tickets", pii_bench._tickets(False)),
                          ("tickets with 5 PII", pii_bench._tickets(True))):
        def batch(payload: dict[str, Any] = payload, calls: int = BATCH) -> None:
            for _ in range(calls):
                protector.protect(payload, Kind.RESULT, "tools/call", True, "demo", "search_tickets")

        batch(calls=10)  # warm: caches of paths and key words, lazily built recognizer state
        out[name] = best_ms(batch, repeat, BATCH)
    return out


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench.alternate import cli

    return cli(__doc__ or "", "protect_bench", "4-5 KB tool result", digits=3, repeat=7, rounds=3)


if __name__ == "__main__":
    sys.exit(main())

"""Analysis CPU per tool result, this tree against another checkout of guard, same machine, same run.

    .venv/bin/python bench/analysis_bench.py                       # this tree only
    git archive main | tar -x -C /tmp/guard-main                   # another version to compare with
    .venv/bin/python bench/analysis_bench.py --other /tmp/guard-main

Builds the analyzer of ``policies/pii.toml`` (:class:`guard.pii.engine.Analyzer`, in this
process, no cache) and times its analysis of the strings guard sends to the analyzer for
relay-benchmark results (``bench/payloads.py``; every call with its own tag, so nothing
repeats): 1 KB PII-free, 4 KB and 16 KB with PII. Best of ``--repeat`` runs (CPU time; the
machine is shared). With ``--other DIR`` the same is measured for the guard in ``DIR`` in a
separate process, alternating with this tree, and the ratio is printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTS = ((1024, False, 30), (4096, True, 20), (16384, True, 8))


def measure(root: Path, repeat: int) -> dict[str, float]:
    """Run in a process whose ``sys.path`` starts with ``root`` (see ``main``)."""
    sys.path.insert(0, str(ROOT))  # this tree's payloads (per-call tags)
    sys.path.insert(0, str(root))
    from bench.alternate import best_ms
    from bench.payloads import result, unique_tag
    from guard import configtools as ct
    from guard.crypto.aead import KeyRing
    from guard.jsonrpc import Kind
    from guard.pii.engine import Analyzer
    from guard.pii.protect import Protector
    from guard.pii.rules import load_rules

    rules = load_rules(root / "policies" / "pii.toml", ct.Problems())
    analyzer = Analyzer(rules.detected_entities(), rules.recognizers)
    protector = Protector(None, rules, KeyRing("bench", {"bench": bytes(32)}), "bench")
    out = {}
    for size, pii, count in POINTS:
        calls = []
        for n in range(count):
            payload = {"jsonrpc": "2.0", "id": n, "result": result(size, pii, n % 8, unique_tag(n))}
            calls.append(protector.collect(payload, Kind.RESULT, "tools/call", True, "demo", "t").items)
        def analyze_all(calls: list[list[tuple[str, tuple[str, ...]]]] = calls) -> None:
            for items in calls:
                for text, words in items:
                    analyzer.analyze(text, words)

        out[f"{size // 1024} KB {'PII' if pii else 'PII-free'}"] = best_ms(analyze_all, repeat, len(calls))
    return out


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench.alternate import cli

    return cli(__doc__ or "", "analysis_bench", "result (unique values)", digits=2, repeat=3, rounds=2)


if __name__ == "__main__":
    sys.exit(main())

"""This tree against another checkout of guard, alternating in separate processes, best kept.

Used by ``bench/analysis_bench.py`` and ``bench/protect_bench.py``: each defines
``measure(root, repeat) -> {name: milliseconds}`` that imports guard from ``root``; here it is
run in a fresh process per tree (so the two guards never share a process), the trees alternate
for ``rounds`` rounds on the same machine, and the best of each figure is kept (the machine is
shared; the best is the least disturbed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_ms(work: Callable[[], object], repeat: int, per: int) -> float:
    """Milliseconds of CPU per unit of ``work()`` (which does ``per`` units), best of ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work()
        best = min(best, (time.process_time() - started) / per)
    return best * 1e3


def measure_in(module: str, root: Path, repeat: int) -> dict[str, float]:
    """``bench.<module>.measure(root, repeat)`` in a new process (this tree's ``bench`` package)."""
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); from bench.{module} import measure; "
            f"from pathlib import Path; print(json.dumps(measure(Path({str(root)!r}), {repeat})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def alternate(module: str, other: Path | None, repeat: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Best figures of this tree and (with ``other``) of the other checkout, alternating."""
    mine: dict[str, float] = {}
    theirs: dict[str, float] = {}
    for _ in range(rounds if other else 1):
        for key, value in measure_in(module, ROOT, repeat).items():
            mine[key] = min(mine.get(key, float("inf")), value)
        if other:
            for key, value in measure_in(module, other.resolve(), repeat).items():
                theirs[key] = min(theirs.get(key, float("inf")), value)
    return mine, theirs


def table(title: str, mine: dict[str, float], other: dict[str, float], digits: int) -> None:
    """Print the figures, with the other tree's and the ratio other / this when there are any."""
    print(f"{title:24} {'this tree ms':>12}" + (f" {'other ms':>9} {'other / this':>12}" if other else ""))
    for key, value in mine.items():
        line = f"{key:24} {value:>12.{digits}f}"
        if other:
            line += f" {other[key]:>9.{digits}f} {other[key] / value:>12.2f}"
        print(line)


def cli(doc: str, module: str, title: str, *, digits: int, repeat: int, rounds: int) -> int:
    """The command line both benchmarks share: ``[--other DIR] [--repeat N] [--rounds N]``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", type=Path, help="another guard checkout to compare with")
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating rounds with --other (best kept)")
    args = parser.parse_args()
    mine, other = alternate(module, args.other, args.repeat, args.rounds)
    table(title, mine, other, digits)
    return 0

"""The verdict cache measured honestly: a stream where nothing repeats, and a repetitive one.

    .venv/bin/python bench/cache_bench.py                 # 1 KB PII-free and 4 KB PII results
    .venv/bin/python bench/cache_bench.py --calls 400 --sizes 1024,4096,16384

For each payload kind, the analysis of ``--calls`` tool results (the items guard's process
sends to an analyzer: distinct strings with their context words) is timed (CPU) with the
analyzer alone and through a fresh :class:`guard.pii.scan.cache.VerdictCache` (best of
``--repeat`` interleaved runs: the machine is shared), on two streams:

* **unique**: every string of every result ends in a word that is different in each call
  (``bench.payloads.unique_tag``), as the relay benchmark's upstream serves by default:
  the cache never answers and only costs its digests;
* **repeat**: the 8 variants of ``bench/payloads.py`` in rotation (what a busy tool
  returning the same tickets or customers looks like): the cache answers most strings.

Both runs check that the cached detections equal the fresh ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.payloads import result, unique_tag  # noqa: E402
from guard import configtools as ct  # noqa: E402
from guard.crypto.aead import KeyRing  # noqa: E402
from guard.jsonrpc import Kind  # noqa: E402
from guard.pii.analysis import Item, analyze_items  # noqa: E402
from guard.pii.engine import Analyzer  # noqa: E402
from guard.pii.protect import Protector  # noqa: E402
from guard.pii.rules import load_rules  # noqa: E402
from guard.pii.scan.cache import VerdictCache  # noqa: E402


def stream(protector: Protector, size: int, pii: bool, calls: int, unique: bool) -> list[list[Item]]:
    out = []
    for n in range(calls):
        payload = {"jsonrpc": "2.0", "id": n, "result": result(size, pii, n % 8, unique_tag(n) if unique else None)}
        out.append(protector.collect(payload, Kind.RESULT, "tools/call", True, "demo", "t").items)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sizes", default="1024,4096")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each mode (best is kept)")
    args = parser.parse_args()
    rules = load_rules(ROOT / "policies" / "pii.toml", ct.Problems())
    analyzer = Analyzer(rules.detected_entities(), rules.recognizers)
    protector = Protector(None, rules, KeyRing("bench", {"bench": bytes(32)}), "bench")
    print(f"{'payload':16} {'stream':7} {'calls':>5} {'strings/call':>12} {'no cache ms':>11} {'cache ms':>9} "
          f"{'x':>6} {'hit rate':>8}  equal")
    ok = True
    for size in (int(s) for s in args.sizes.split(",")):
        for pii in (False, True):
            if (size, pii) not in ((1024, False), (4096, True)) and args.sizes == "1024,4096":
                continue
            for unique in (True, False):
                calls = stream(protector, size, pii, args.calls, unique)
                analyze_items(analyzer, calls[0])  # warm
                plain = with_cache = float("inf")
                for _ in range(args.repeat):  # interleaved, best of: the machine is shared
                    t0 = time.process_time()
                    fresh = [analyze_items(analyzer, items) for items in calls]
                    plain = min(plain, (time.process_time() - t0) / len(calls))
                    cache = VerdictCache()
                    t0 = time.process_time()
                    cached = [cache.analyze(analyzer, items) for items in calls]
                    with_cache = min(with_cache, (time.process_time() - t0) / len(calls))
                equal = cached == fresh
                ok = ok and equal
                per_call = sum(map(len, calls)) / len(calls)
                hit_rate = cache.hits / max(cache.hits + cache.misses, 1)
                label = f"{size // 1024} KB {'PII' if pii else 'PII-free'}"
                print(f"{label:16} {'unique' if unique else 'repeat':7} {len(calls):>5} {per_call:>12.0f} "
                      f"{plain * 1e3:>11.2f} {with_cache * 1e3:>9.2f} {plain / with_cache:>6.1f} "
                      f"{hit_rate:>8.1%}  {equal}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

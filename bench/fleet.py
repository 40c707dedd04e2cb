"""Fleet figures (issue 17): what the fleet test measures, plus the cost of shared limits per request.

    .venv/bin/python bench/fleet.py              # both parts (about 1 minute)
    .venv/bin/python bench/fleet.py --figures    # only the fleet test's figures
    .venv/bin/python bench/fleet.py --overhead   # only the per-request cost of a Redis-held limit

``--figures`` runs ``tests/cluster/test_fleet.py`` (three ``guard serve`` replicas behind HAProxy,
one redis-server; a replica and Redis killed mid-traffic) and prints the figures it records:
calls, limits, refusals, how soon a breaker opened on one replica refuses on the others, the
reconnect time of WebSocket clients after their replica died, Redis outage detection/recovery.

``--overhead`` times ``take()`` of the in-process token bucket against the Redis-held one
(:class:`guard.cluster.limits.FleetRateLimiter`, one Lua ``EVALSHA`` on loopback), one
caller at a time and 32 concurrent callers: the latency a request pays for a fleet-wide limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def figures() -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                           "tests/cluster/test_fleet.py"], cwd=ROOT, capture_output=True, text=True)
    out: dict[str, object] = {}
    for line in proc.stdout.splitlines():
        if line.lstrip(".").startswith("FLEET "):
            name, _, value = line.lstrip(".")[6:].partition(" = ")
            out[name] = json.loads(value)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], file=sys.stderr)
        raise SystemExit(f"the fleet test failed (exit {proc.returncode})")
    return out


async def overhead(calls: int = 3000) -> dict[str, object]:
    from guard.cluster.fleet import build_fleet
    from guard.config import parse
    from guard.limits import RateLimiter
    from guard.metrics import Metrics
    from tests.support.fleet import redis_server

    def summary(samples: list[float]) -> dict[str, float]:
        samples.sort()
        return {"p50_us": round(statistics.median(samples) * 1e6, 1),
                "p99_us": round(samples[int(len(samples) * 0.99)] * 1e6, 1)}

    local = RateLimiter(1e9, 10**9)
    timings: list[float] = []
    for i in range(calls):
        start = time.perf_counter()
        await local.take(f"p{i % 50}")
        timings.append(time.perf_counter() - start)
    result: dict[str, object] = {"local_take": summary(timings)}
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis:
        settings = parse({"server": {"rate_limit": 1e9, "rate_burst": 10**9},
                          "upstreams": {"s": {"url": "ws://127.0.0.1:9/"}}, "auth": {"anonymous_servers": ["s"]},
                          "cluster": {"redis_url": redis.url, "deadline_ms": 5000}})
        metrics = Metrics()
        fleet = build_fleet(settings, metrics, on_breaker_change=metrics.breaker_state)
        await fleet.start()
        limiter = fleet.rate_limiter
        assert limiter is not None
        timings = []
        for i in range(calls):
            start = time.perf_counter()
            await limiter.take(f"p{i % 50}")
            timings.append(time.perf_counter() - start)
        result["redis_take_sequential"] = summary(timings)

        async def one(i: int) -> float:
            start = time.perf_counter()
            await limiter.take(f"p{i % 50}")
            return time.perf_counter() - start

        await asyncio.gather(*(one(k) for k in range(32)))  # warm-up: the pool opens its 32 connections
        started = time.perf_counter()
        concurrent: list[float] = []
        for batch in range(calls // 32):
            concurrent += await asyncio.gather(*(one(batch * 32 + k) for k in range(32)))
        elapsed = time.perf_counter() - started
        result["redis_take_32_concurrent"] = {**summary(concurrent),
                                              "takes_per_s": round(len(concurrent) / elapsed)}
        result["redis_stayed_up"] = fleet.store.up
        await fleet.aclose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figures", action="store_true")
    parser.add_argument("--overhead", action="store_true")
    args = parser.parse_args()
    both = not (args.figures or args.overhead)
    report: dict[str, object] = {}
    if args.figures or both:
        report["fleet"] = figures()
    if args.overhead or both:
        report["overhead"] = asyncio.run(overhead())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

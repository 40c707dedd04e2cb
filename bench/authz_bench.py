"""Authorization decision latency with a 10,000-line policy (target: p99 <= 50 us).

Run:  .venv/bin/python bench/authz_bench.py [--lines 10000] [--decisions 200000] [--casbin-lines 1000]

The synthetic policy mixes what real policies contain: per-role exact tool grants, glob grants
(``find_*``, ``customers://**``), argument conditions (``database == analytics``,
``path under /srv/public/``), explicit denies, role inheritance through ``g`` lines and a few
``*``-subject rules, spread over 50 upstream servers. Requests come from principals holding
1-3 token roles and ask for a random mix of granted, denied and unknown targets, so the
measurement covers allows, explicit denies and default denies. Every decision is timed
individually with ``perf_counter_ns`` (no decision cache: each call walks the index).

For comparison it also times pycasbin's own ``enforce`` on the same model with a
``--casbin-lines`` policy (the reference enforcer guard checks itself against).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guard.context import Principal
from guard.policy.casbin_ref import build_enforcer, casbin_decide
from guard.policy.engine import Snapshot
from guard.policy.model import MODEL_TEXT
from guard.policy.store import build_snapshot

SERVERS = [f"srv{i}" for i in range(50)]
METHODS = ["tools/call", "resources/read", "prompts/get", "tools/list", "completion/complete"]


def synthetic_policy(lines: int, rng: random.Random) -> tuple[str, int]:
    """A policy of ``lines`` rule/link lines; returns its text and the number of roles."""
    roles = max(10, lines // 20)
    out: list[str] = []
    for r in range(roles // 10):  # role inheritance: every tenth role inherits the next one
        out.append(f"g, role:r{r * 10}, role:r{r * 10 + 1}")
    for i in range(20):
        out.append(f"p, *, {SERVERS[i]}, tools/call, forbidden_{i}, deny")
    while len(out) < lines:
        role = f"role:r{rng.randrange(roles)}"
        server = rng.choice(SERVERS)
        kind = rng.random()
        if kind < 0.55:
            out.append(f"p, {role}, {server}, tools/call, tool_{rng.randrange(400)}, allow")
        elif kind < 0.65:
            out.append(f"p, {role}, {server}, tools/call, find_{rng.randrange(40)}_*, allow")
        elif kind < 0.72:
            out.append(f"p, {role}, {server}, resources/read, res{rng.randrange(50)}://**, allow")
        elif kind < 0.80:
            out.append(f"p, {role}, {server}, tools/call, query_{rng.randrange(100)}, allow, "
                       f"database in analytics|reporting && limit <= 1000")
        elif kind < 0.86:
            out.append(f"p, {role}, {server}, tools/call, read_file_{rng.randrange(100)}, allow, "
                       f"path under /srv/public/")
        elif kind < 0.92:
            out.append(f"p, {role}, {server}, tools/call, tool_{rng.randrange(400)}, deny")
        elif kind < 0.96:
            out.append(f"p, {role}, {server}, prompts/get, prompt_{rng.randrange(100)}, allow")
        else:
            out.append(f"p, {role}, {server}, tools/list, *, allow")
    return "\n".join(out[:lines]) + "\n", roles


def _target_for(pattern: str, rng: random.Random) -> str:
    """A concrete target that ``pattern`` matches."""
    if pattern == "*":
        return ""
    return pattern.replace("**", f"items/{rng.randrange(1000)}").replace("*", "customer")


def _arguments_for(cond: str, rng: random.Random) -> object:
    if "database" in cond:
        return {"database": rng.choice(["analytics", "reporting", "prod"]), "limit": rng.choice([10, 5000])}
    if "path" in cond:
        return {"path": rng.choice(["/srv/public/a.txt", "/srv/public/docs/b.md", "/srv/public/../etc/passwd"])}
    return {"x": 1}


def synthetic_requests(count: int, roles: int, rng: random.Random,
                       policy_text: str = "") -> list[tuple[Principal, str, str, str, object]]:
    """60% of requests are built from a random rule (its role, server, method, a matching target and
    arguments that may or may not satisfy its condition); 40% are random (mostly default deny)."""
    rules = [[f.strip() for f in line.split(",", 6)] for line in policy_text.splitlines()
             if line.startswith("p, role:")]
    requests: list[tuple[Principal, str, str, str, object]] = []
    for i in range(count):
        extra = tuple(f"r{rng.randrange(roles)}" for _ in range(rng.randint(0, 2)))
        if rules and rng.random() < 0.6:
            _, sub, server, method, obj, _eft, *cond = rng.choice(rules)
            principal = Principal(subject=f"user{i % 500}", roles=(sub.removeprefix("role:"), *extra))
            requests.append((principal, server, method, _target_for(obj, rng),
                             _arguments_for(cond[0] if cond else "", rng)))
            continue
        principal = Principal(subject=f"user{i % 500}", roles=extra or ("r0",))
        server = rng.choice(SERVERS)
        kind = rng.random()
        if kind < 0.5:
            requests.append((principal, server, "tools/call", f"tool_{rng.randrange(400)}", {"x": 1}))
        elif kind < 0.7:
            requests.append((principal, server, "resources/read",
                             f"res{rng.randrange(50)}://items/{rng.randrange(1000)}", None))
        elif kind < 0.9:
            requests.append((principal, server, "tools/call", f"forbidden_{rng.randrange(20)}", {}))
        else:
            requests.append((principal, server, "ping", "", None))
    return requests


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


def time_decisions(snapshot: Snapshot, requests: list[tuple[Principal, str, str, str, object]]) -> list[float]:
    decide = snapshot.decide
    clock = time.perf_counter_ns
    samples: list[float] = []
    for principal, server, method, target, args in requests:
        start = clock()
        decide(principal, server, method, target, args)
        samples.append((clock() - start) / 1000.0)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--casbin-lines", type=int, default=1_000)
    parser.add_argument("--casbin-decisions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    text, roles = synthetic_policy(args.lines, rng)
    started = time.perf_counter()
    snapshot = build_snapshot(MODEL_TEXT, text)
    build_ms = (time.perf_counter() - started) * 1000
    requests = synthetic_requests(args.decisions, roles, rng, text)
    time_decisions(snapshot, requests[: min(20_000, len(requests))])  # warm caches
    samples = sorted(time_decisions(snapshot, requests))
    allowed = sum(1 for p, s, m, t, a in requests[:20_000] if snapshot.decide(p, s, m, t, a).allowed)

    print(f"policy: {args.lines} lines ({snapshot.size} rules incl. built-ins, {len(snapshot.links)} links, "
          f"{roles} roles); snapshot build {build_ms:.0f} ms")
    print(f"guard indexed decisions: n={len(samples)}  allowed={allowed / min(20_000, len(requests)):.0%}")
    print(f"  mean {statistics.fmean(samples):6.2f} us   p50 {percentile(samples, 0.50):6.2f} us   "
          f"p99 {percentile(samples, 0.99):6.2f} us   p99.9 {percentile(samples, 0.999):6.2f} us   "
          f"max {samples[-1]:8.2f} us")
    verdict = "PASS" if percentile(samples, 0.99) <= 50 else "FAIL"
    print(f"  target p99 <= 50 us: {verdict}")

    if args.casbin_lines > 0:
        small_text, small_roles = synthetic_policy(args.casbin_lines, random.Random(args.seed))
        small = build_snapshot(MODEL_TEXT, small_text)
        enforcer = build_enforcer(small)
        small_requests = synthetic_requests(args.casbin_decisions, small_roles, random.Random(args.seed + 1),
                                             small_text)
        times: list[float] = []
        mismatches = 0
        for principal, server, method, target, arguments in small_requests:
            start = time.perf_counter_ns()
            allowed_ref, _ = casbin_decide(enforcer, principal, server, method, target, arguments)
            times.append((time.perf_counter_ns() - start) / 1000.0)
            mismatches += allowed_ref != small.decide(principal, server, method, target, arguments).allowed
        times.sort()
        print(f"pycasbin enforce (reference), {args.casbin_lines} lines: n={len(times)}  "
              f"p50 {percentile(times, 0.5) / 1000:.2f} ms   p99 {percentile(times, 0.99) / 1000:.2f} ms   "
              f"disagreements with guard: {mismatches}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

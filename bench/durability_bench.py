"""What the audit write-ahead costs, per ``[audit] durability`` policy (issue 15).

    .venv/bin/python bench/durability_bench.py            # about 45 s
    .venv/bin/python bench/durability_bench.py --rounds 3 --duration 3

Starts the WebSocket bench upstream, the bare relay and one PII-off guard per policy
(``always``, ``group``, ``off``; the realistic configuration of ``bench/run.py``: JWT,
Casbin policy, audit to a file), then, round-robin over rounds, runs ``bench/load.py``
(32 clients, closed loop, 1 KB PII-free results) against each. Prints throughput, p50/p99
under load and the ratio to the bare relay (issue 16's budget: a PII-off guard at
>= 0.80x the bare relay), medians over rounds. The audit files are written on the temp
directory's file system: ``fsync`` cost depends on it (tmpfs makes it free).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import BENCH, Servers, free_port, guard_cli, run_load, wait_port, write_configs

POLICIES = ("always", "group", "off")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="where the audit files go (default: a temp dir)")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="comma-separated; 'none' = no durability key (a guard from before issue 15)")
    parser.add_argument("--baseline", type=Path,
                        help="also run the guard of this source tree (e.g. `git archive` of a commit before the "
                             "write-ahead) as configuration 'baseline', without a durability key")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guard-durability-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        guard_cli("keys", "generate", "--dir", str(workdir / "keys"))
        token = guard_cli("token", "mint", "--dir", str(workdir / "keys"), "--sub", "bench", "--role", "analyst",
                          "--ttl", "2h").strip()
        servers = Servers(workdir, token)
        try:
            up_port = free_port()
            servers.start("upstream", [str(BENCH / "upstream.py"), "--port", str(up_port)], up_port)
            base = write_configs(workdir, up_port)["guard-nopii"].read_text()
            port = free_port()
            servers.start("bare", [str(BENCH / "bare_relay.py"), "--port", str(port), "--upstream",
                                   f"ws://127.0.0.1:{up_port}/"], port)
            policies = tuple(args.policies.split(","))
            for policy in policies:
                cfg = workdir / f"{policy}.toml"
                cfg.write_text(base.replace("audit-guard-nopii/", f"audit-{policy}/")
                               + ("" if policy == "none" else f'durability = "{policy}"\n'))
                port = free_port()
                servers.start(policy, ["-m", "guard.cli", "serve", "--config", str(cfg), "--port", str(port)], port)
            names: tuple[str, ...] = ("bare", *policies)
            if args.baseline is not None:
                cfg = workdir / "baseline.toml"
                cfg.write_text(base.replace("audit-guard-nopii/", "audit-baseline/"))
                port = free_port()
                env = {**os.environ, "PYTHONPATH": str(args.baseline)}
                with open(workdir / "baseline.log", "w") as log:
                    proc = subprocess.Popen([sys.executable, "-m", "guard.cli", "serve", "--config", str(cfg),
                                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                            cwd=args.baseline, env=env)
                servers.procs["baseline"], servers.ports["baseline"] = proc, port
                wait_port(port, proc)
                names += ("baseline",)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for _ in range(args.rounds):
                for name in runs:
                    runs[name].append(run_load(servers, name, clients=args.clients, duration=args.duration,
                                               warmup=args.warmup, size=1024, pii=False))
        finally:
            servers.stop_all()
        fs = subprocess.run(["df", "-T", str(workdir)], capture_output=True, text=True).stdout.splitlines()[-1]
    print(f"durability bench: {args.clients} clients, {args.rounds} x {args.duration} s per point, 1 KB clean; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; audit fs: {fs.split()[1]}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| configuration | calls/s | p50 ms | p99 ms | vs bare relay |")
    print("|---|---|---|---|---|")
    bare = statistics.median(r["throughput"] for r in runs["bare"])
    for name, results in runs.items():
        rps = statistics.median(r["throughput"] for r in results)
        p50 = statistics.median(r["p50_ms"] for r in results)
        p99 = statistics.median(r["p99_ms"] for r in results)
        label = {"bare": "bare relay", "baseline": "guard, PII off, no write-ahead (baseline)"}.get(
            name, f"guard, PII off, durability = {name}")
        print(f"| {label} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {rps / bare:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

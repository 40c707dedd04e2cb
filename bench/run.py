"""The relay benchmark: direct vs bare relay vs guard, one command.

    .venv/bin/python bench/run.py              # full run (about 5 minutes)
    .venv/bin/python bench/run.py --quick      # short run (about 1.5 minutes)
    .venv/bin/python bench/run.py --write-readme   # also put the results table into bench/README.md

What it does (every server in its own process, the load generator in another; nothing pinned):

1. ``guard keys generate`` into a temporary directory and ``guard token mint`` (role ``analyst``);
   two guard configurations next to them: *guard* (JWT with a static public key issuer,
   the shipped ``policies/model.conf`` + ``policies/policy.csv``, ``policies/pii.toml``,
   audit to a file) and *guard-nopii* (the same without ``[pii]``).
2. Starts the upstream (``bench/upstream.py``, WebSocket; ``--values unique`` by default:
   no string repeats between calls, so guard's verdict cache cannot flatter the figures;
   ``--values repeat`` for the repetitive stream), the bare relay
   (``bench/bare_relay.py``) and both guards, all pointing at that one upstream.
3. For each payload (1 KB, 4 KB, 16 KB results, each with and without PII) and each
   configuration (direct to the upstream, bare relay, guard-nopii, guard), runs
   ``bench/load.py``: N concurrent clients in a closed loop (throughput, p50/p99 under
   load, server CPU per call), then one client alone (unloaded latency).
4. The burst (``bench/burst.py``): 1,000 concurrent sessions x 5 calls to *guard* (PII
   stage at its default settings); every call must succeed.
5. RSS per idle session: a fresh guard, then a fresh bare relay, each holding 1,000
   idle sessions (``bench/idle.py``), RSS over the idle process.
6. The micro-benchmarks of the other areas: ``bench/pii_bench.py --speed``, ``--stock``
   (guard's findings against stock Presidio on every benchmark payload and the corpus),
   ``bench/cache_bench.py``,
   ``bench/authz_bench.py``, ``bench/audit_bench.py``.

``--profile DIR`` also records py-spy profiles of both guards under the 1 KB PII-free
load (raw collapsed stacks; summarize with ``bench/profile_summary.py``).

Prints Markdown (machine, date, command, tables, target checks); ``--json FILE`` writes
the raw figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
MARK_START = "<!-- results:start -->"
MARK_END = "<!-- results:end -->"
SIZES = (1024, 4096, 16384)
CONFIGS = ("direct", "bare", "guard-nopii", "guard")
LABELS = {
    "direct": "direct to upstream",
    "bare": "bare relay",
    "guard-nopii": "guard, PII stage off",
    "guard": "guard, PII stage on",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open within {timeout} s")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Servers:
    """The processes of one benchmark run and where they listen."""

    workdir: Path
    token: str
    procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def url(self, config: str) -> str:
        if config == "direct":
            return f"ws://127.0.0.1:{self.ports['upstream']}/"
        return f"ws://127.0.0.1:{self.ports[config]}/mcp/demo"

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def start(self, name: str, args: list[str], port: int) -> subprocess.Popen[Any]:
        with open(self.workdir / f"{name}.log", "w") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen([PY, *args], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs[name] = proc
        self.ports[name] = port
        wait_port(port, proc)
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def guard_cli(*args: str) -> str:
    return subprocess.run([PY, "-m", "guard.cli", *args], check=True, capture_output=True, text=True,
                          cwd=ROOT).stdout


def write_configs(workdir: Path, upstream_port: int) -> dict[str, Path]:
    """The realistic guard configurations (see the module docstring)."""
    policies = ROOT / "policies"
    common = f"""
[server]
host = "127.0.0.1"
log_level = "info"
# one principal drives all the load: lift the per-principal caps (the checks still run)
rate_limit = 1000000.0
rate_burst = 1000000
max_connections_per_principal = 5000

[upstreams.demo]
url = "ws://127.0.0.1:{upstream_port}/"

[auth]
audience = "guard-dev"

[[auth.issuers]]
issuer = "guard-dev"
algorithms = ["ES256"]
public_keys = ["keys/auth-signing-key.pub.pem"]

[policy]
model = "{policies / 'model.conf'}"
policy = "{policies / 'policy.csv'}"
"""
    pii = f"""
[pii]
rules = "{policies / 'pii.toml'}"
keyring_file = "keys/pii-keyring.json"
"""
    paths = {}
    for name, extra in (("guard", pii), ("guard-nopii", "")):
        audit = f"""
[audit]
path = "audit-{name}/guard-audit.jsonl"
signing_key = "keys/audit-signing-key.pem"
"""
        path = workdir / f"{name}.toml"
        path.write_text(common + extra + audit)
        paths[name] = path
    return paths


def run_load(servers: Servers, config: str, *, clients: int, duration: float, warmup: float, size: int,
             pii: bool) -> dict[str, Any]:
    pids = [f"upstream={servers.pid('upstream')}"]
    if config != "direct":
        pids.append(f"server={servers.pid(config)}")
    cmd = [PY, str(BENCH / "load.py"), "--url", servers.url(config), "--clients", str(clients),
           "--duration", str(duration), "--warmup", str(warmup), "--size", str(size), "--pids", ",".join(pids)]
    if config != "direct" and config != "bare":
        cmd += ["--token", servers.token]
    if pii:
        cmd.append("--pii")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, timeout=duration + 120)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def smoke(servers: Servers) -> dict[str, Any]:
    """One call per configuration: it answers, and guard protects the PII it should."""
    sys.path.insert(0, str(ROOT))
    from bench.payloads import sample_pii_values

    checks: dict[str, Any] = {}
    from websockets.sync.client import connect

    for config in CONFIGS:
        headers = {"Authorization": f"Bearer {servers.token}"} if config.startswith("guard") else {}
        with connect(servers.url(config), subprotocols=["mcp"], additional_headers=headers,  # type: ignore[list-item]
                     max_size=None) as ws:
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                "params": {"name": "list_customers", "arguments": {"size": 4096, "pii": True}}}))
            reply = ws.recv(30)
        text = reply if isinstance(reply, str) else reply.decode()
        emails = [e for v in range(8) for e in sample_pii_values(4096, v)]
        checks[config] = {"ok": '"result"' in text, "raw_emails_seen": any(e in text for e in emails)}
    return checks


def burst(servers: Servers, sessions: int, calls: int = 5) -> dict[str, Any]:
    """``bench/burst.py`` against guard with the PII stage at its default settings."""
    cmd = [PY, str(BENCH / "burst.py"), "--url", servers.url("guard"), "--token", servers.token,
           "--sessions", str(sessions), "--calls", str(calls)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    if out.returncode != 0:
        return {"sessions": sessions, "calls": sessions * calls, "ok": 0, "errors": {"burst failed": 1},
                "first_error": out.stderr.strip()[-300:]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def audit_records(workdir: Path, name: str) -> int:
    folder = workdir / f"audit-{name}"
    if not folder.is_dir():
        return 0
    return sum(sum(1 for _ in p.open()) for p in folder.glob("*.jsonl"))


def matrix(servers: Servers, args: argparse.Namespace) -> list[dict[str, Any]]:
    points: list[tuple[int, bool]] = [(1024, False), (4096, True)] if args.quick else \
        [(size, pii) for size in SIZES for pii in (False, True)]
    rows = []
    for size, pii in points:
        rounds: dict[str, list[dict[str, Any]]] = {config: [] for config in CONFIGS}
        for _ in range(args.rounds):  # configurations interleaved, so drifting background load hits all
            for config in CONFIGS:
                rounds[config].append(run_load(servers, config, clients=args.clients, duration=args.duration,
                                               warmup=args.warmup, size=size, pii=pii))
        for config in CONFIGS:
            loaded = combine(rounds[config])
            alone = run_load(servers, config, clients=1, duration=args.latency_duration, warmup=0.3,
                             size=size, pii=pii)
            rows.append({"config": config, "size": size, "pii": pii, "loaded": loaded, "alone": alone})
            server_cpu = loaded["cpu"].get("server")
            per_call = f", server CPU {server_cpu / max(1, loaded['calls']) * 1e6:.0f} us/call" \
                if server_cpu is not None else ""
            print(f"  {size:>6} B {'PII' if pii else 'clean':5} {config:12} {loaded['throughput']:8.0f} calls/s  "
                  f"p50 {ms(loaded['p50_ms'])} ms  p99 {ms(loaded['p99_ms'])} ms  alone p50 "
                  f"{ms(alone['p50_ms'], 3)} ms{per_call}  errors {loaded['errors'] + alone['errors']}"
                  + (f" ({loaded['first_error'] or alone['first_error']})" if loaded["errors"] + alone["errors"]
                     else ""), file=sys.stderr, flush=True)
    return rows


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds of one point: medians of the rates and percentiles, sums of counts and CPU."""
    def median(key: str) -> float | None:
        values = sorted(r[key] for r in runs if r.get(key) is not None)
        return statistics.median(values) if values else None

    cpu: dict[str, float] = {}
    for r in runs:
        for name, seconds in r["cpu"].items():
            cpu[name] = cpu.get(name, 0.0) + seconds
    return {
        "rounds": len(runs),
        "calls": sum(r["calls"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "first_error": next((r["first_error"] for r in runs if r["first_error"]), None),
        "throughput": median("throughput") or 0.0,
        "throughputs": [round(r["throughput"]) for r in runs],
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "cpu": cpu,
    }


def ms(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def idle_rss(servers: Servers, name: str, args_: list[str], port: int, sessions: int,
             token: str) -> dict[str, float]:
    """RSS of a fresh server process before and while holding ``sessions`` idle sessions."""
    proc = servers.start(name, args_, port)
    time.sleep(1.0)
    before = rss(proc.pid)
    url = f"ws://127.0.0.1:{port}/mcp/demo"
    holder = subprocess.Popen([PY, str(BENCH / "idle.py"), "--url", url, "--token", token, "--sessions",
                               str(sessions)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline().strip()
        if line != f"open {sessions}":
            raise RuntimeError(f"idle sessions did not open: {line!r}")
        time.sleep(2.0)
        held = rss(proc.pid)
    finally:
        with contextlib.suppress(Exception):
            assert holder.stdin is not None
            holder.stdin.close()
        try:
            holder.wait(60)
        except subprocess.TimeoutExpired:
            holder.kill()
        servers.stop(name)
    return {"idle_mb": before / 1e6, "held_mb": held / 1e6, "delta_mb": (held - before) / 1e6,
            "per_session_kib": (held - before) / sessions / 1024}


def micro(args: argparse.Namespace) -> dict[str, str]:
    runs = {
        "pii_bench.py --speed": [str(BENCH / "pii_bench.py"), "--speed"] + (["--repeat", "10"] if args.quick else []),
        "pii_bench.py --stock": [str(BENCH / "pii_bench.py"), "--stock"] + (["--quick"] if args.quick else []),
        "cache_bench.py": [str(BENCH / "cache_bench.py")] + (["--calls", "80", "--repeat", "1"] if args.quick else []),
        "authz_bench.py": [str(BENCH / "authz_bench.py")] + (["--decisions", "50000"] if args.quick else []),
        "audit_bench.py": [str(BENCH / "audit_bench.py")] + (["--records", "10000"] if args.quick else
                                                            ["--records", "20000"]),
    }
    out = {}
    for name, cmd in runs.items():
        if not Path(cmd[0]).exists():
            out[name] = "(not present)"
            continue
        done = subprocess.run([PY, *cmd], capture_output=True, text=True, cwd=ROOT, timeout=600)
        text = done.stdout.strip() or done.stderr.strip()[-2000:]
        out[name] = text if done.returncode == 0 else f"(exit status {done.returncode})\n{text}"
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return out


@contextlib.contextmanager
def profiling(servers: Servers, directory: Path | None, config: str, seconds: float) -> Iterator[None]:
    if directory is None or shutil.which("py-spy", path=str(Path(PY).parent)) is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{config}-1k-clean.txt"
    spy = subprocess.Popen([str(Path(PY).parent / "py-spy"), "record", "-p", str(servers.pid(config)), "-d",
                            str(int(seconds)), "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.wait(seconds + 30)


# Report ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = "unknown"
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip() or "unknown"
    return {"cpu": model, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "python": platform.python_version(), "commit": commit}


def sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(meta: dict[str, Any], rows: list[dict[str, Any]], rss_rows: dict[str, dict[str, float]],
           micro_out: dict[str, str], smoke_checks: dict[str, Any]) -> str:
    lines = [
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, Linux {meta['machine']['kernel']}, "
        f"Python {meta['machine']['python']}; guard commit {meta['machine']['commit']} (plus the working tree).",
        f"Date: {meta['date']}. Command: `{meta['command']}`.",
        f"Load: {meta['clients']} concurrent WebSocket clients, one call outstanding each; {meta['rounds']} "
        f"round(s) of {meta['duration']} s measured after {meta['warmup']} s warm-up per point, configurations "
        f"interleaved, medians shown; \"alone\" = 1 client, {meta['latency_duration']} s. "
        f"Upstream values: {meta.get('values', 'repeat')} "
        f"({'no string repeats between calls' if meta.get('values') == 'unique' else '8 variants in rotation'}). "
        f"Load average before/after: {meta['load_before']} / {meta['load_after']}.",
        f"Audit records written during the run: guard {meta['audit']['guard']:,}, guard-nopii "
        f"{meta['audit']['guard-nopii']:,} (0 means the audit stage is not wired into the pipeline yet).",
        "",
        "| result | configuration | calls/s | x bare | p50 ms | p99 ms | added p50 ms | x bare added | "
        "alone p50 ms | alone added ms | x bare alone added | server CPU us/call | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_point: dict[tuple[int, bool], dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_point.setdefault((row["size"], row["pii"]), {})[row["config"]] = row
    for (size, pii), configs in by_point.items():
        direct, bare = configs["direct"], configs["bare"]
        added_bare = sub(bare["loaded"]["p50_ms"], direct["loaded"]["p50_ms"])
        alone_added_bare = sub(bare["alone"]["p50_ms"], direct["alone"]["p50_ms"])
        for config in CONFIGS:
            loaded, alone = configs[config]["loaded"], configs[config]["alone"]
            relay = config != "direct"
            added = sub(loaded["p50_ms"], direct["loaded"]["p50_ms"]) if relay else None
            alone_added = sub(alone["p50_ms"], direct["alone"]["p50_ms"]) if relay else None
            cpu = loaded["cpu"].get("server")
            lines.append(
                f"| {size // 1024} KB {'PII' if pii else 'no PII'} | {LABELS[config]} | "
                f"{loaded['throughput']:,.0f} | {num(div(loaded['throughput'], bare['loaded']['throughput']))} | "
                f"{num(loaded['p50_ms'])} | {num(loaded['p99_ms'])} | {num(added)} | "
                f"{num(div(added, added_bare))} | {num(alone['p50_ms'], 3)} | {num(alone_added, 3)} | "
                f"{num(div(alone_added, alone_added_bare))} | "
                f"{num(div(cpu, loaded['calls'] / 1e6) if cpu is not None else None, 0)} | "
                f"{loaded['errors'] + alone['errors']} |")
    errors = {f"{r['size'] // 1024} KB {'PII' if r['pii'] else 'no PII'} {r['config']}":
              r["loaded"]["first_error"] or r["alone"]["first_error"]
              for r in rows if r["loaded"]["errors"] + r["alone"]["errors"]}
    lines += ["", "Errors: " + ("none." if not errors else "; ".join(f"{k}: `{v}`" for k, v in errors.items()))]
    lines += ["", "Smoke check, 4 KB PII result: raw e-mail addresses reach the client? " + ", ".join(
        f"{c} {'yes' if v['raw_emails_seen'] else 'no'}" for c, v in smoke_checks.items()) + "."]
    lines += ["", "CPU per message (server CPU per call, analyzer processes included, / 2):", ""]
    for (size, pii), configs in by_point.items():
        parts = []
        for config in CONFIGS[1:]:
            loaded = configs[config]["loaded"]
            cpu = loaded["cpu"].get("server", 0.0)
            per_message = f"{num(cpu / loaded['calls'] / 2 * 1e6, 0)} us" if loaded["calls"] else "- (no calls)"
            parts.append(f"{LABELS[config]} {per_message}")
        lines.append(f"- {size // 1024} KB {'PII' if pii else 'no PII'}: " + "; ".join(parts))
    if rss_rows:
        lines += ["", "| idle sessions | process | RSS idle MB | RSS with sessions MB | over idle MB | KiB/session |",
                  "|---:|---|---:|---:|---:|---:|"]
        for name, r in rss_rows.items():
            lines.append(f"| {meta['sessions']:,} | {name} | {r['idle_mb']:.1f} | {r['held_mb']:.1f} | "
                         f"{r['delta_mb']:.1f} | {r['per_session_kib']:.1f} |")
    lines += ["", f"Targets of issue 16 (same run; upstream values: {meta.get('values', 'repeat')}):", ""]
    lines += [f"- {t}" for t in targets(meta, by_point, rss_rows, micro_out)]
    for name, text in micro_out.items():
        lines += ["", f"`bench/{name}`:", "", "```", text, "```"]
    return "\n".join(lines)


def targets(meta: dict[str, Any], by_point: dict[tuple[int, bool], dict[str, dict[str, Any]]],
            rss_rows: dict[str, dict[str, float]], micro_out: dict[str, str]) -> list[str]:
    """Issue 16's targets, each with its figure from this run and its status."""
    out = []

    def verdict(value: float | None, limit: float, at_least: bool, unit: str = "") -> str:
        if value is None:
            return "- **not met** (no successful calls)"
        ok = value >= limit if at_least else value <= limit
        return f"{value:.2f}{unit} {'**met**' if ok else '**not met**'}"

    def ratio(point: dict[str, dict[str, Any]], config: str) -> float | None:
        return div(point[config]["loaded"]["throughput"], point["bare"]["loaded"]["throughput"])

    def added(point: dict[str, dict[str, Any]], config: str) -> float | None:
        return sub(point[config]["alone"]["p50_ms"], point["direct"]["alone"]["p50_ms"])

    clean = by_point.get((1024, False))
    if clean is not None:
        out.append("PII stage off (authn + authz + audit), 1 KB PII-free, throughput >= 0.80 x bare relay: "
                   f"{verdict(ratio(clean, 'guard-nopii'), 0.8, True)}")
        out.append("PII stage off, 1 KB PII-free, one caller's added p50 <= 1.3 x the bare relay's: "
                   f"{verdict(div(added(clean, 'guard-nopii'), added(clean, 'bare')), 1.3, False)} "
                   f"({num(added(clean, 'guard-nopii'), 3)} ms vs {num(added(clean, 'bare'), 3)} ms)")
        out.append("PII stage on, 1 KB PII-free, throughput >= 0.50 x bare relay: "
                   f"{verdict(ratio(clean, 'guard'), 0.5, True)}")
    pii4 = by_point.get((4096, True))
    if pii4 is not None:
        out.append("PII stage on, 4 KB PII result, throughput >= 0.25 x bare relay: "
                   f"{verdict(ratio(pii4, 'guard'), 0.25, True)}")
        out.append("PII stage on, 4 KB PII result, one caller's added p50 <= 1 ms: "
                   f"{verdict(added(pii4, 'guard'), 1.0, False, ' ms')}")
    pii16 = by_point.get((16384, True))
    if pii16 is not None:
        out.append(f"PII stage on, 16 KB PII result, throughput >= 0.10 x bare relay: "
                   f"{verdict(ratio(pii16, 'guard'), 0.1, True)}")
    burst_out = meta.get("burst") or {}
    if burst_out:
        ok = burst_out["ok"] == burst_out["calls"]
        detail = "" if ok else f"; errors {burst_out['errors']}"
        out.append(f"{burst_out['sessions']:,} concurrent sessions x 5 calls, default PII settings, every call "
                   f"succeeds: {burst_out['ok']:,} of {burst_out['calls']:,} in {burst_out.get('seconds', '-')} s "
                   f"{'**met**' if ok else '**not met**'}{detail}")
    stock = micro_out.get("pii_bench.py --stock")
    if stock is not None:
        superset = "superset of stock Presidio: yes" in stock
        out.append("findings a superset of stock Presidio's on every benchmark payload and the PII corpus: "
                   f"{'**met**' if superset else '**not met**'} (`bench/pii_bench.py --stock` below)")
    if "guard" in rss_rows:
        sessions = meta["sessions"]
        delta = rss_rows["guard"]["delta_mb"] * 1000 / max(1, sessions)
        out.append(f"(earlier target) RSS for 1,000 idle sessions <= 100 MB over the idle process: {delta:.1f} MB "
                   f"{'**met**' if delta <= 100 else '**not met**'}"
                   + ("" if sessions == 1000 else f" (scaled from {sessions} sessions)"))
    return out


def write_readme(text: str) -> None:
    readme = BENCH / "README.md"
    content = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in content or MARK_END not in content:
        content += f"\n{MARK_START}\n{MARK_END}\n"
    head, rest = content.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    readme.write_text(f"{head}{MARK_START}\n{text}\n{MARK_END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run: 1 KB clean and 4 KB PII only, 2 s each")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, help="rounds per point under load, medians reported (default 2, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds measured per point under load (default 4, quick 2)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--latency-duration", type=float, help="seconds with one client (default 2, quick 1)")
    parser.add_argument("--sessions", type=int, help="idle sessions for the RSS figure (default 1000, quick 300)")
    parser.add_argument("--skip-micro", action="store_true", help="skip the PII/authz/audit micro-benchmarks")
    parser.add_argument("--values", choices=("unique", "repeat"), default="unique",
                        help="unique: no string repeats between calls (default, what the targets are judged on); "
                             "repeat: 8 rotating variants (guard's verdict cache answers most strings)")
    parser.add_argument("--burst-sessions", type=int, default=1000, help="sessions of the burst target (0: skip)")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of both guards here")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--write-readme", action="store_true", help="replace the results section of bench/README.md")
    parser.add_argument("--from-json", type=Path, help="only render the report of an earlier --json run")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        text = report(saved["meta"], saved["rows"], saved["rss"], saved["micro"], saved["smoke"])
        text += f"\n\nWhole run: {saved['meta']['elapsed_s']} s."
        print(text)
        if args.write_readme:
            write_readme(text)
        return 0
    args.duration = args.duration or 2.0
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.latency_duration = args.latency_duration or (1.0 if args.quick else 2.0)
    args.sessions = args.sessions or (300 if args.quick else 1000)
    started = time.monotonic()
    meta: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        "clients": args.clients, "duration": args.duration, "warmup": args.warmup, "rounds": args.rounds,
        "latency_duration": args.latency_duration, "sessions": args.sessions, "values": args.values,
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        workdir = Path(tmp)
        guard_cli("keys", "generate", "--dir", str(workdir / "keys"))
        token = guard_cli("token", "mint", "--dir", str(workdir / "keys"), "--sub", "bench", "--role", "analyst",
                          "--ttl", "2h").strip()
        servers = Servers(workdir, token)
        try:
            up_port = free_port()
            servers.start("upstream", [str(BENCH / "upstream.py"), "--port", str(up_port), "--values", args.values],
                          up_port)
            configs = write_configs(workdir, up_port)
            port = free_port()
            servers.start("bare", [str(BENCH / "bare_relay.py"), "--port", str(port), "--upstream",
                                   f"ws://127.0.0.1:{up_port}/"], port)
            for name, path in configs.items():
                port = free_port()
                servers.start(name, ["-m", "guard.cli", "serve", "--config", str(path), "--port", str(port)], port)
            print(f"servers up ({time.monotonic() - started:.0f} s); smoke check", file=sys.stderr, flush=True)
            smoke_checks = smoke(servers)
            with profiling(servers, args.profile, "guard", args.duration + args.warmup):
                if args.profile:
                    run_load(servers, "guard", clients=args.clients, duration=args.duration, warmup=args.warmup,
                             size=1024, pii=False)
            with profiling(servers, args.profile, "guard-nopii", args.duration + args.warmup):
                if args.profile:
                    run_load(servers, "guard-nopii", clients=args.clients, duration=args.duration,
                             warmup=args.warmup, size=1024, pii=False)
            print("load matrix", file=sys.stderr, flush=True)
            rows = matrix(servers, args)
            burst_out: dict[str, Any] = {}
            if args.burst_sessions:
                print(f"burst: {args.burst_sessions} sessions x 5 calls", file=sys.stderr, flush=True)
                burst_out = burst(servers, args.burst_sessions)
            meta["burst"] = burst_out
            meta["audit"] = {name: audit_records(workdir, name) for name in configs}
            for name in ("bare", "guard", "guard-nopii"):
                servers.stop(name)
            print("idle sessions (RSS)", file=sys.stderr, flush=True)
            rss_rows = {
                "guard": idle_rss(servers, "guard", ["-m", "guard.cli", "serve", "--config", str(configs["guard"]),
                                                     "--port", str(port := free_port())], port, args.sessions, token),
                "bare relay": idle_rss(servers, "bare", [str(BENCH / "bare_relay.py"), "--port",
                                                         str(port := free_port()), "--upstream",
                                                         f"ws://127.0.0.1:{up_port}/"], port, args.sessions, ""),
            }
        finally:
            servers.stop_all()
    micro_out: dict[str, str] = {}
    if not args.skip_micro:
        print("micro-benchmarks", file=sys.stderr, flush=True)
        micro_out = micro(args)
    meta["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["elapsed_s"] = round(time.monotonic() - started)
    text = report(meta, rows, rss_rows, micro_out, smoke_checks)
    text += f"\n\nWhole run: {meta['elapsed_s']} s."
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "rss": rss_rows, "micro": micro_out,
                                         "smoke": smoke_checks}, indent=2))
    if args.write_readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

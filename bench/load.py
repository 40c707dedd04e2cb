"""Load generator: N concurrent WebSocket clients calling ``tools/call`` back to back.

    python bench/load.py --url ws://127.0.0.1:9300/mcp/demo --token "$TOKEN" \
        --clients 32 --duration 5 --size 4096 --pii --pids guard=1234,upstream=1200

Runs in its own process (the benchmark's servers each have theirs). Every client keeps
exactly one call outstanding (closed loop): send, wait for the answer, send the next.
After ``--warmup`` seconds the measurement window opens; calls completing inside it are
counted and their latencies kept. The CPU time (user + system, from ``/proc/PID/stat``)
each process in ``--pids`` (with its child processes: guard's analyzer processes) and this
process spent during the window is reported too.

Prints one JSON object: ``calls``, ``errors``, ``throughput`` (calls/s), latency
percentiles in ms, ``cpu`` seconds per process, and the first error seen, if any.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import orjson
from websockets.asyncio.client import connect

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (guard's analyzer
    processes), from ``/proc/PID/stat`` fields 14 and 15."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = _stat(current)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
        todo.extend(children.get(current, []))
    return total


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error: str | None = None
        self.start = 0.0
        self.end = 0.0
        arguments = {"query": "customers in region EU with open tickets", "size": args.size, "pii": args.pii}
        params = orjson.dumps({"name": args.tool, "arguments": arguments}).decode()
        self.template = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":' + params + "}"

    def error(self, text: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = text[:300]

    async def client(self, ws: Any, index: int) -> None:
        rid = index * 10_000_000
        template = self.template
        perf = time.perf_counter
        while True:
            rid += 1
            t0 = perf()
            if t0 >= self.end:
                return
            try:
                await ws.send(template % rid)
                frame = await ws.recv()
            except Exception as exc:
                self.error(f"connection: {type(exc).__name__}: {exc}")
                return
            t1 = perf()
            reply = orjson.loads(frame)
            if reply.get("id") != rid or "result" not in reply:
                self.error(frame if isinstance(frame, str) else repr(frame))
                continue
            if self.start <= t1 <= self.end:
                self.latencies.append(t1 - t0)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    sockets = []
    for batch in range(0, args.clients, 100):
        sockets += await asyncio.gather(*(
            connect(args.url, subprotocols=["mcp"], additional_headers=headers,  # type: ignore[list-item]
                    compression=None, max_size=None, ping_interval=None, open_timeout=30)
            for _ in range(batch, min(batch + 100, args.clients))))
    pids = {}
    for item in filter(None, args.pids.split(",")):
        name, _, pid = item.partition("=")
        pids[name] = int(pid)
    pids["load"] = os.getpid()
    now = time.perf_counter()
    run.start = now + args.warmup
    run.end = run.start + args.duration
    tasks = [asyncio.create_task(run.client(ws, i)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(max(0.0, run.start - time.perf_counter()))
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wall0 = time.perf_counter()
    await asyncio.sleep(max(0.0, run.end - time.perf_counter()))
    cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wall = time.perf_counter() - wall0
    await asyncio.gather(*tasks)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    lat = sorted(run.latencies)
    calls = len(lat)
    return {
        "clients": args.clients,
        "size": args.size,
        "pii": args.pii,
        "calls": calls,
        "errors": run.errors,
        "first_error": run.first_error,
        "window": wall,
        "throughput": calls / wall if wall > 0 else 0.0,
        "p50_ms": percentile(lat, 0.50) * 1e3,
        "p90_ms": percentile(lat, 0.90) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "mean_ms": (sum(lat) / calls * 1e3) if calls else float("nan"),
        "cpu": {name: cpu1[name] - cpu0[name] for name in pids},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--pii", action="store_true")
    parser.add_argument("--tool", default="list_customers")
    parser.add_argument("--pids", default="", help="NAME=PID,... processes whose CPU time to report")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    try:
        import uvloop

        report = uvloop.run(main(arguments))
    except ImportError:
        report = asyncio.run(main(arguments))
    sys.stdout.write(orjson.dumps(report).decode() + "\n")

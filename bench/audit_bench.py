"""Audit throughput: records/s through the AuditStage, durable-denial latency, verify speed.

Run: ``.venv/bin/python bench/audit_bench.py [--records 50000] [--fsync off|denials|always]``

What it shows: records are built, chained and handed to the OS on the event loop (one
``os.write`` per loop turn) and ``fsync``ed on the file thread in group commits, so audit
is not the bottleneck of a proxy whose upstream calls take milliseconds. Numbers depend
on the disk (fsync) and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from guard.audit import schema
from guard.audit.log import AuditLog
from guard.audit.sink import FileSink, SinkConfig
from guard.audit.verify import verify
from guard.context import (
    Decision,
    Direction,
    Finding,
    MessageContext,
    Principal,
    RequestRecord,
    SessionInfo,
    Verdict,
)
from guard.crypto.signing import signing_key_from_seed
from guard.jsonrpc import ErrorCode, Kind, Message, request
from guard.pipeline.audit import AuditStage

KEY = signing_key_from_seed(b"\x07" * 32)
SESSION = SessionInfo(id="bench-session", server="crm", client_addr="127.0.0.1:50000",
                      principal=Principal("alice", ("analyst",), "https://idp.example", "acme"))


def call(i: int, denied: bool = False) -> MessageContext:
    msg = request(i, "tools/call", {"name": "lookup", "arguments": {"q": "x" * 200}})
    ctx = MessageContext(SESSION, Direction.CLIENT_TO_SERVER, msg, method="tools/call", target="lookup",
                         request=RequestRecord(i, "tools/call", "lookup", Direction.CLIENT_TO_SERVER,
                                               time.perf_counter()))
    ctx.decision = Decision(not denied, "policy", "p, analyst, crm, lookup")
    if denied:
        ctx.verdict = Verdict.reject(ErrorCode.POLICY_DENIED, "Denied", {"reason": "policy_denied"}, stage="authorize")
    return ctx


def result(i: int, request_record: RequestRecord | None = None) -> MessageContext:
    payload = {"jsonrpc": "2.0", "id": i, "result": {"content": [{"type": "text", "text": "y" * 500}]}}
    ctx = MessageContext(SESSION, Direction.SERVER_TO_CLIENT, Message(Kind.RESULT, payload, 560),
                         method="tools/call", target="lookup",
                         request=request_record or RequestRecord(i, "tools/call", "lookup",
                                                                 Direction.CLIENT_TO_SERVER, time.perf_counter()))
    ctx.findings = [Finding("EMAIL_ADDRESS", "$.result.content[0].text", "redact")]
    ctx.upstream_outcome = "ok"
    return ctx


def make_stage(directory: Path, fsync: str, durability: str = "always") -> AuditStage:
    config = SinkConfig(path=directory / "audit.jsonl", key=KEY, fsync=fsync,  # type: ignore[arg-type]
                        checkpoint_path=directory / "cp.jsonl")
    sink = FileSink(config, now=time.time, monotonic=time.monotonic, new_id=schema.new_event_id)
    return AuditStage(AuditLog(sink), durability=durability)  # type: ignore[arg-type]


async def throughput(directory: Path, n: int, fsync: str, durability: str, concurrency: int) -> tuple[float, float]:
    """``concurrency`` callers, each a call (written ahead) then its result: how a loaded proxy feeds audit."""
    stage = make_stage(directory, fsync, durability)
    await stage.start()
    pairs = [(call(i), i) for i in range(0, n, 2)]
    queue: asyncio.Queue[tuple[MessageContext, int]] = asyncio.Queue()
    for pair in pairs:
        queue.put_nowait(pair)

    async def caller() -> None:
        while not queue.empty():
            ctx, i = queue.get_nowait()
            await stage.process(ctx)
            await stage.process(result(i + 1, ctx.request))

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    await stage.log.flush()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await stage.aclose()
    return n / elapsed, cpu / n * 1e6


async def denial_latency(directory: Path, n: int, fsync: str) -> list[float]:
    stage = make_stage(directory, fsync)
    await stage.start()
    samples = []
    for i in range(n):
        ctx = call(i, denied=True)
        t0 = time.perf_counter()
        await stage.process(ctx)
        samples.append((time.perf_counter() - t0) * 1e3)
    await stage.aclose()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--denials", type=int, default=500)
    parser.add_argument("--fsync", choices=("off", "denials", "always"), default="denials")
    parser.add_argument("--durability", choices=("always", "group", "off"), default="always",
                        help="write-ahead of the calls (see docs/compliance.md)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent callers (call, then its result)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # the disk under test, not a tmpfs /tmp
        base = Path(tmp)
        rate, cpu_us = asyncio.run(throughput(base / "t", args.records, args.fsync, args.durability,
                                              args.concurrency))
        print(f"stage throughput ({args.records} records: calls and results, {args.concurrency} callers, "
              f"fsync={args.fsync}, durability={args.durability}): "
              f"{rate:,.0f} records/s; {cpu_us:.1f} us CPU per record (loop + fsync thread)")
        lat = asyncio.run(denial_latency(base / "d", args.denials, args.fsync))
        q = statistics.quantiles(lat, n=100)
        print(f"durable denial (write{' + fsync' if args.fsync != 'off' else ''} before reply): "
              f"p50 {q[49]:.3f} ms, p99 {q[98]:.3f} ms over {args.denials}")
        t0 = time.perf_counter()
        res = verify([base / "t"], keys=[KEY.public])
        elapsed = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (base / "t").glob("*.jsonl"))
        print(f"verify: {res.records:,} records ({size / 1e6:.1f} MB) in {elapsed:.2f} s = "
              f"{res.records / elapsed:,.0f} records/s, status {res.status}")


if __name__ == "__main__":
    main()

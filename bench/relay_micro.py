"""guard's own CPU per call, without sockets: the relay and pipeline driven in memory.

    python bench/relay_micro.py --config guard.toml [--calls 20000] [--size 1024] [--pii] [--profile]

Builds the runtime from a guard configuration (every stage it configures), then runs
one :class:`~guard.relay.Relay` whose client and upstream are in-memory queues: the
client sends ``tools/call`` requests (``--inflight`` outstanding), the upstream answers
each with a pre-serialized result from :mod:`bench.payloads`. What is measured is what
guard adds per call on top of moving frames: parse, correlation, every stage, serialize.
WebSocket framing and system calls are not included (``bench/run.py`` measures those).

``--profile`` prints the top of a cProfile run (deterministic, so slower overall, but it
shows call counts).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import cpu_seconds
from bench.payloads import result_json
from guard.config import load
from guard.context import Principal, SessionInfo
from guard.jsonrpc import Message
from guard.relay import Relay, RelayLimits
from guard.runtime import build_runtime
from guard.session import Session


class MemoryClient:
    """The client: ``inflight`` calls outstanding, a new one sent for every answer."""

    def __init__(self, calls: int, inflight: int, size: int, pii: bool) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.remaining = calls
        self.answered = 0
        self.errors = 0
        self.done = asyncio.Event()
        self._next_id = 0
        args = f'{{"query":"customers in region EU with open tickets","size":{size},"pii":{str(pii).lower()}}}'
        self._template = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"list_customers",' \
                         '"arguments":' + args + "}}"
        for _ in range(min(inflight, calls)):
            self._send_next()

    def _send_next(self) -> None:
        if self.remaining <= 0:
            return
        self.remaining -= 1
        self._next_id += 1
        self.inbox.put_nowait(self._template % self._next_id)

    async def receive(self) -> str | bytes | None:
        return await self.inbox.get()

    async def send(self, text: str) -> None:
        self.answered += 1
        if '"result"' not in text[:200] and '"error"' in text:
            self.errors += 1
        if self.remaining > 0:
            self._send_next()
        elif self.answered >= self._next_id:
            self.done.set()

    async def close(self, code: int, reason: str) -> None:
        self.inbox.put_nowait(None)


class MemoryUpstream:
    """The upstream: answers every request with a pre-serialized result of the requested size."""

    def __init__(self, size: int, pii: bool) -> None:
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self._bodies = [result_json(size, pii, v) for v in range(8)]
        self._turn = 0

    async def start(self) -> None:
        return None

    async def send(self, text: str, message: Message) -> None:
        if message.id is not None:
            self._turn += 1
            body = self._bodies[self._turn % len(self._bodies)]
            self.outbox.put_nowait(f'{{"jsonrpc":"2.0","id":{message.id},"result":{body}}}')

    async def receive(self) -> str:
        return await self.outbox.get()

    async def aclose(self) -> None:
        return None


async def run(config: Path, calls: int, inflight: int, size: int, pii: bool) -> dict[str, Any]:
    settings = load(config)
    runtime = build_runtime(settings)
    await runtime.start()
    server = next(iter(settings.upstreams))
    principal = Principal("bench", ("analyst",), "guard-dev", expires_at=time.time() + 3600)
    info = SessionInfo(id="bench", server=server, client_addr="127.0.0.1:1", principal=principal)
    client = MemoryClient(calls, inflight, size, pii)
    relay = Relay(session=Session(info, settings.server.max_in_flight), pipeline=runtime.pipeline,
                  client=client, upstream=MemoryUpstream(size, pii),
                  limits=RelayLimits(max_message_bytes=settings.server.max_message_bytes,
                                     outbound_queue=settings.server.outbound_queue,
                                     call_timeout=settings.upstreams[server].call_timeout,
                                     idle_timeout=settings.server.idle_timeout,
                                     rate_limiter=runtime.rate_limiter,
                                     breaker=runtime.breakers.get(server), principal_key="bench"),
                  tracer=runtime.tracer)  # [tracing] in the config: spans are made and exported too
    task = asyncio.create_task(relay.run())
    cpu0, all0, wall0 = time.process_time(), cpu_seconds(os.getpid()), time.perf_counter()
    await client.done.wait()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    everything = cpu_seconds(os.getpid()) - all0
    await relay.shutdown(1000, "done")
    await task
    await runtime.aclose()
    return {"calls": calls, "errors": client.errors, "cpu_us_per_call": cpu / calls * 1e6,
            "cpu_us_per_call_with_analyzers": everything / calls * 1e6, "calls_per_s": calls / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--pii", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    coro = run(args.config, args.calls, args.inflight, args.size, args.pii)
    if args.profile:
        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, coro)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    else:
        result = asyncio.run(coro)
    print(result)


if __name__ == "__main__":
    main()

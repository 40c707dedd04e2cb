"""The benchmark's upstream MCP server: WebSocket (subprotocol ``mcp``), answers fast.

    python bench/upstream.py --port 9100

Serves ``ws://127.0.0.1:PORT/`` until killed and prints ``ready`` once listening. Every
configuration of the benchmark (direct, bare relay, guard) talks to this same process.

``tools/call`` with ``arguments: {"size": BYTES, "pii": true|false}`` answers with a
result from :mod:`bench.payloads` of about that many bytes (customer records with e-mail
addresses, phone and card numbers, or PII-free tickets). The bodies are built once at
start-up (8 variants per size) and the response is spliced together as text, so the
upstream spends microseconds per call and is not what limits the benchmark.

``--values unique`` (the default): every string value of every response ends in a word
that is different in each response (:func:`bench.payloads.unique_tag`), so nothing
repeats from call to call and guard's verdict cache never answers; ``--values repeat``:
the 8 variants in rotation, a repetitive stream where it answers most strings. ``initialize``,
``ping`` and ``tools/list`` are answered too, so an MCP client can talk to it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.payloads import TAG_PLACEHOLDER, result_json, unique_tag

SIZES = (1024, 4096, 16384)
VARIANTS = 8
TOOLS = {"tools": [{"name": name, "description": "Customer or ticket records of a requested size.",
                    "inputSchema": {"type": "object", "properties": {"size": {"type": "integer"},
                                                                       "pii": {"type": "boolean"}}}}
                   for name in ("list_customers", "find_customer", "get_customer")]}


class Bodies:
    """Pre-serialized results, rotated through the variants (with a fresh tag per call if unique)."""

    def __init__(self, unique: bool = True) -> None:
        self._tag = TAG_PLACEHOLDER if unique else None
        self._bodies = {(size, pii): [result_json(size, pii, v, self._tag) for v in range(VARIANTS)]
                        for size in SIZES for pii in (False, True)}
        self._turn = itertools.count()

    def get(self, size: int, pii: bool) -> str:
        key = (size, pii)
        if key not in self._bodies:
            self._bodies[key] = [result_json(size, pii, v, self._tag) for v in range(VARIANTS)]
        variants = self._bodies[key]
        turn = next(self._turn)
        body = variants[turn % len(variants)]
        return body if self._tag is None else body.replace(TAG_PLACEHOLDER, unique_tag(turn))


def answer(message: dict[str, Any], bodies: Bodies) -> str | None:
    request_id = message.get("id")
    method = message.get("method")
    if request_id is None or method is None:
        return None
    rid = orjson.dumps(request_id).decode()
    if method == "tools/call":
        args = (message.get("params") or {}).get("arguments") or {}
        body = bodies.get(int(args.get("size", 1024)), bool(args.get("pii", False)))
    elif method == "initialize":
        body = orjson.dumps({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                             "serverInfo": {"name": "bench-upstream", "version": "1"}}).decode()
    elif method == "tools/list":
        body = orjson.dumps(TOOLS).decode()
    elif method == "ping":
        body = "{}"
    else:
        return f'{{"jsonrpc":"2.0","id":{rid},"error":{{"code":-32601,"message":"Method not found"}}}}'
    return f'{{"jsonrpc":"2.0","id":{rid},"result":{body}}}'


async def main(port: int, unique: bool = True) -> None:
    bodies = Bodies(unique)

    async def handler(ws: ServerConnection) -> None:
        async for frame in ws:
            try:
                reply = answer(orjson.loads(frame), bodies)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                continue
            if reply is not None:
                await ws.send(reply)

    async with serve(handler, "127.0.0.1", port, subprotocols=["mcp"],  # type: ignore[list-item]
                     compression=None, max_size=None, ping_interval=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--values", choices=("unique", "repeat"), default="unique")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.port, args.values == "unique"))
    except ImportError:
        asyncio.run(main(args.port, args.values == "unique"))

"""A burst: N concurrent sessions, each making M calls back to back; counts what succeeded.

    python bench/burst.py --url ws://127.0.0.1:9300/mcp/demo --token "$TOKEN" --sessions 1000 --calls 5

Opens every session first (in batches of 100), then all of them call at once: call ``j`` of
each session asks the benchmark upstream for a 1 KB result, PII-free for even ``j`` and
with PII for odd ``j`` (``tools/call`` ``{"size": 1024, "pii": ...}``). Issue 16's target:
with guard's default configuration every call succeeds (no ``pii_overloaded``).

Prints one JSON object: ``sessions``, ``calls``, ``ok``, ``errors`` (by code/reason),
``seconds`` for the calls, ``first_error``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from websockets.asyncio.client import connect


async def run(url: str, token: str, sessions: int, calls: int, size: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    sockets: list[Any] = []
    for start in range(0, sessions, 100):
        sockets += await asyncio.gather(*(
            connect(url, subprotocols=["mcp"], additional_headers=headers, open_timeout=60,  # type: ignore[list-item]
                    max_size=None, ping_interval=None)
            for _ in range(start, min(start + 100, sessions))))
    errors: Counter[str] = Counter()
    first: list[str] = []

    async def session(index: int, ws: Any) -> int:
        ok = 0
        for j in range(calls):
            request = {"jsonrpc": "2.0", "id": index * 100 + j, "method": "tools/call",
                       "params": {"name": "list_customers", "arguments": {"size": size, "pii": bool(j % 2)}}}
            await ws.send(json.dumps(request))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 300))
            if "result" in reply and reply.get("id") == request["id"]:
                ok += 1
                continue
            error = reply.get("error") or {}
            reason = (error.get("data") or {}).get("reason") if isinstance(error.get("data"), dict) else None
            errors[f"{error.get('code')} {reason or error.get('message')}"] += 1
            if not first:
                first.append(json.dumps(error)[:300])
        return ok

    started = time.monotonic()
    done = await asyncio.gather(*(session(i, ws) for i, ws in enumerate(sockets)))
    seconds = time.monotonic() - started
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {"sessions": sessions, "calls": sessions * calls, "ok": sum(done), "errors": dict(errors),
            "seconds": round(seconds, 2), "first_error": first[0] if first else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.token, args.sessions, args.calls, args.size))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

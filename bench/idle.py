"""Open N idle WebSocket sessions and hold them until stdin closes (for RSS per idle session).

    python bench/idle.py --url ws://127.0.0.1:9300/mcp/demo --token "$TOKEN" --sessions 1000

Prints ``open N`` once every session is established (each answered one ``ping``, so each
is fully set up on the server side, upstream connection included), then waits for
stdin to close and closes them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from websockets.asyncio.client import ClientConnection, connect


async def open_one(url: str, headers: dict[str, str], index: int) -> ClientConnection:
    ws = await connect(url, subprotocols=["mcp"], additional_headers=headers,  # type: ignore[list-item]
                       compression=None, max_size=None, ping_interval=None, open_timeout=60)
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": index, "method": "ping"}))
    await asyncio.wait_for(ws.recv(), 60)
    return ws


async def main(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    sockets: list[ClientConnection] = []
    for batch in range(0, args.sessions, 100):
        sockets += await asyncio.gather(*(open_one(args.url, headers, i)
                                          for i in range(batch, min(batch + 100, args.sessions))))
    print(f"open {len(sockets)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--sessions", type=int, default=1000)
    asyncio.run(main(parser.parse_args()))

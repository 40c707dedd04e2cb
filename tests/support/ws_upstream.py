"""A light JSON-RPC-over-WebSocket upstream for load tests: answers every request with its params.

``python ws_upstream.py PORT`` serves ws://127.0.0.1:PORT/ (subprotocol mcp) until killed.
"""

import asyncio
import json
import sys

from websockets.asyncio.server import serve


async def handler(ws):
    async for frame in ws:
        msg = json.loads(frame)
        if "id" in msg and "method" in msg:
            text = json.dumps(msg.get("params"))
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"],
                                      "result": {"content": [{"type": "text", "text": text}]}}))


async def main(port):
    async with serve(handler, "127.0.0.1", port, subprotocols=["mcp"], compression=None, max_size=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

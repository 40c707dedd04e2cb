"""A light JSON-RPC-over-WebSocket upstream for load and fault tests.

``python ws_upstream.py PORT [--strict]`` serves ws://127.0.0.1:PORT/ (subprotocol mcp) until
killed. Every request is answered with its params as text content, except ``test/hang``
(never answered) and ``test/raw_result`` (``params.text`` written verbatim as the result, raw
JSON text: a lone surrogate escape, ``1e400``, a >64-bit integer) and ``test/deep`` (a
result whose ``structuredContent`` nests ``params.levels`` objects around a phone number).
With ``--strict`` a connection must send ``initialize`` before anything else, like a
legacy-era MCP server (error -32002 otherwise).
"""

import asyncio
import json
import sys

from websockets.asyncio.server import serve

STRICT = "--strict" in sys.argv


async def handler(ws):
    initialized = False
    async for frame in ws:
        msg = json.loads(frame)
        if "id" not in msg or "method" not in msg:
            continue
        method = msg["method"]
        if method == "initialize":
            initialized = True
            result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "ws", "version": "1"}}
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}))
            continue
        if method == "test/hang":
            continue
        rid = json.dumps(msg["id"])
        if method == "test/deep":
            levels = msg["params"]["levels"]
            deep = '{"a":' * levels + '"call +1 (212) 555-0187"' + "}" * levels
            await ws.send(f'{{"jsonrpc":"2.0","id":{rid},"result":{{"content":[],"structuredContent":{deep}}}}}')
            continue
        if method == "test/raw_result":
            await ws.send(f'{{"jsonrpc":"2.0","id":{rid},"result":{msg["params"]["text"]}}}')
            continue
        if STRICT and not initialized:
            error = {"code": -32002, "message": "not initialized"}
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": error}))
            continue
        text = json.dumps(msg.get("params"))
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": msg["id"],
                                  "result": {"content": [{"type": "text", "text": text}]}}))


async def main(port):
    async with serve(handler, "127.0.0.1", port, subprotocols=["mcp"], compression=None, max_size=None):
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

"""An MCP server over WebSocket built with the official Python SDK **1.x** (guard's WebSocket upstream).

Runs in ``.venv-mcp1`` (``mcp==1.30.0``; 2.x removed the WebSocket transport)::

    .venv-mcp1/bin/python tests/e2e/servers/mcp1_ws_server.py [--host 127.0.0.1] [--port 0] [--path /mcp]

It prints its URL (``ws://127.0.0.1:PORT/mcp``) as the first stdout line once the socket listens
(``--port 0``, the default, picks a free port), then serves until killed. The endpoint uses mcp 1.x
``websocket_server`` (subprotocol ``mcp``, one JSON-RPC message per text frame, legacy era only).

Tools: ``echo(text)``, ``add(a, b)``, ``ask_llm(prompt)`` (sends ``sampling/createMessage`` to the
client and returns the reply text), ``log(message)`` (sends a ``notifications/message``), and
``handshake()`` (the HTTP headers of this connection's WebSocket upgrade, lower-cased; lets a test
prove which credentials guard sent upstream and that the client's token was not passed through).

Set ``GUARD_DEMO_RECORD=/path/file.jsonl`` (same format as ``guard.demo``) to append every tool
call received: ``{"method": "tools/call", "name", "arguments", "headers"}``.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import SamplingMessage, TextContent
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from mcp.server.websocket import websocket_server

_HEADERS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("handshake_headers", default=None)
RECORD = os.environ.get("GUARD_DEMO_RECORD")


def _record(name: str, arguments: dict[str, Any]) -> None:
    if not RECORD:
        return
    entry = {"method": "tools/call", "name": name, "arguments": arguments, "headers": _HEADERS.get() or {}}
    with Path(RECORD).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def build() -> FastMCP:
    mcp = FastMCP("mcp1-ws-upstream", instructions="mcp 1.x WebSocket test upstream", log_level="WARNING")

    @mcp.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        _record("echo", {"text": text})
        return text

    @mcp.tool()
    def add(a: float, b: float) -> float:
        """Add two numbers."""
        _record("add", {"a": a, "b": b})
        return a + b

    @mcp.tool()
    async def ask_llm(prompt: str, ctx: Context) -> str:  # type: ignore[type-arg]
        """Ask the client's model (sampling/createMessage) and return its text."""
        _record("ask_llm", {"prompt": prompt})
        result = await ctx.session.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=100
        )
        return result.content.text if isinstance(result.content, TextContent) else str(result.content)

    @mcp.tool()
    async def log(message: str, ctx: Context) -> str:  # type: ignore[type-arg]
        """Send a notifications/message (level info) carrying ``message``."""
        _record("log", {"message": message})
        await ctx.info(message)
        return "logged"

    @mcp.tool()
    def handshake() -> dict[str, str]:
        """The HTTP headers of this connection's WebSocket upgrade request (lower-cased names)."""
        _record("handshake", {})
        return dict(_HEADERS.get() or {})

    return mcp


class Endpoint:
    """Raw ASGI WebSocket endpoint: one MCP session per connection."""

    def __init__(self, mcp: FastMCP) -> None:
        self.server = mcp._mcp_server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        _HEADERS.set(headers)  # the session's task group copies this context
        async with websocket_server(scope, receive, send) as (read, write):
            await self.server.run(read, write, self.server.create_initialization_options())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/mcp")
    args = parser.parse_args(argv)

    app = Starlette(routes=[WebSocketRoute(args.path, Endpoint(build()))])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    print(f"ws://{args.host}:{sock.getsockname()[1]}{args.path}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="websockets"))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())

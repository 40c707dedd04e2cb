"""The floor: a bare WebSocket relay with no policy at all, served exactly like guard.

    python bench/bare_relay.py --port 9200 --upstream ws://127.0.0.1:9100/

Same ASGI stack as guard (starlette ``WebSocketRoute`` on uvicorn, ws implementation
``websockets-sansio``, httptools, the event loop uvicorn picks: uvloop when installed), the
same uvicorn WebSocket settings (taken from guard's :class:`~guard.config.ServerSettings`
defaults: max size, no permessage-deflate, ping interval/timeout), and the very same
upstream transport class, :class:`~guard.transports.websocket.WebSocketUpstream`, so a change
to that transport moves both. Per client connection it opens one upstream connection and
copies text frames both ways: no parsing, no correlation, no stages. Whatever guard costs
above this is guard.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from guard.config import ServerSettings, UpstreamSettings
from guard.errors import UpstreamClosed
from guard.jsonrpc import Kind, Message
from guard.transports.websocket import WebSocketUpstream

SETTINGS = ServerSettings()
OPAQUE = Message(Kind.NOTIFICATION, {})
"""What the bare relay passes as the parsed message: it parses nothing (no method, no id)."""


def build_app(upstream_url: str) -> Starlette:
    upstream_settings = UpstreamSettings(name="demo", transport="websocket", url=upstream_url)

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="mcp")
        upstream = WebSocketUpstream(upstream_settings, SETTINGS.max_message_bytes)
        await upstream.start()
        try:
            await _pump(websocket, upstream)
        finally:
            await upstream.aclose()
            with contextlib.suppress(Exception):
                await websocket.close()

    return Starlette(routes=[WebSocketRoute("/mcp/{name}", endpoint)])


async def _pump(websocket: WebSocket, upstream: WebSocketUpstream) -> None:
    async def client_to_upstream() -> None:
        with contextlib.suppress(WebSocketDisconnect, UpstreamClosed):
            while True:
                await upstream.send(await websocket.receive_text(), OPAQUE)

    async def upstream_to_client() -> None:
        with contextlib.suppress(WebSocketDisconnect, UpstreamClosed, RuntimeError):
            while True:
                await websocket.send_text(await upstream.receive())

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def config(app: Starlette, port: int) -> uvicorn.Config:
    """uvicorn options guard's :func:`guard.server.uvicorn_config` sets, minus guard's own handlers."""
    s = SETTINGS
    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        http="httptools",
        ws_max_size=s.max_message_bytes,
        ws_per_message_deflate=s.per_message_deflate,
        ws_ping_interval=s.ping_interval or None,
        ws_ping_timeout=s.ping_timeout,
        log_config=None,
        lifespan="off",
        server_header=False,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="ws:// URL of the upstream")
    args = parser.parse_args()
    uvicorn.Server(config(build_app(args.upstream), args.port)).run()

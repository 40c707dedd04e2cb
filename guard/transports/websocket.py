"""Upstream over WebSocket (subprotocol ``mcp``, one JSON-RPC message per text frame).

WebSocket is a custom MCP transport (no spec revision defines it); guard follows the
convention of the SDKs that had it. Only the upstream's own configured headers are
sent: nothing from the client's handshake.
"""

from __future__ import annotations

import contextlib
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from guard.config import UpstreamSettings
from guard.errors import UpstreamClosed, UpstreamUnavailable
from guard.jsonrpc import Message
from guard.tls import ssl_context_for


class WebSocketUpstream:
    """A WebSocket connection to an upstream MCP server."""

    def __init__(self, settings: UpstreamSettings, max_message_bytes: int) -> None:
        self._settings = settings
        self._max_size = max(max_message_bytes * 4, 16 * 1024 * 1024)
        self._ws: ClientConnection | None = None

    async def start(self) -> None:
        s = self._settings
        if s.url is None:
            raise UpstreamUnavailable("no url configured")
        tls = ssl_context_for(s)  # wss:// with tls_* keys: custom CA / client certificate
        tls_option: dict[str, Any] = {"ssl": tls} if tls is not None else {}
        try:
            self._ws = await connect(
                s.url,
                **tls_option,
                subprotocols=["mcp"],  # type: ignore[list-item]
                additional_headers=dict(s.headers),
                open_timeout=s.connect_timeout,
                max_size=self._max_size,
                compression=None,
                ping_interval=20,
                ping_timeout=20,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise UpstreamUnavailable(f"cannot connect to {s.name}: {type(exc).__name__}") from exc

    async def send(self, text: str, message: Message) -> None:
        if self._ws is None:
            raise UpstreamClosed("upstream not connected")
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise UpstreamClosed(_describe(exc)) from exc

    async def receive(self) -> str:
        if self._ws is None:
            raise UpstreamClosed("upstream not connected")
        while True:
            try:
                frame = await self._ws.recv()
            except ConnectionClosed as exc:
                raise UpstreamClosed(_describe(exc)) from exc
            if isinstance(frame, str):
                return frame
            # A binary frame from the upstream breaks the one-text-frame convention: skip it.

    async def aclose(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()


def _describe(exc: ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "upstream connection lost"
    return f"upstream closed the connection ({rcvd.code})"

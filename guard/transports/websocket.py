"""Upstream over WebSocket (subprotocol ``mcp``, one JSON-RPC message per text frame).

WebSocket is a custom MCP transport (no spec revision defines it); guard follows the
convention of the SDKs that had it. Only the upstream's own configured headers are
sent: nothing from the client's handshake.

Reconnect: when the connection drops, guard re-establishes it (``reconnect_attempts``,
with backoff). A legacy-era session is resumed by replaying the ``initialize`` request
and ``notifications/initialized`` guard forwarded earlier (the upstream's new
``initialize`` reply is consumed, not delivered); a 2026-07-28 session needs nothing
replayed. Requests in flight at the drop are answered with an error by the relay
(:class:`~guard.errors.UpstreamInterrupted`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from guard.config import UpstreamSettings
from guard.errors import ParseError, UpstreamClosed, UpstreamInterrupted, UpstreamUnavailable
from guard.jsonrpc import Message, loads
from guard.tls import ssl_context_for

log = logging.getLogger("guard.upstream.websocket")


class WebSocketUpstream:
    """A WebSocket connection to an upstream MCP server."""

    def __init__(self, settings: UpstreamSettings, max_message_bytes: int) -> None:
        self._settings = settings
        self._max_size = max(max_message_bytes * 4, 16 * 1024 * 1024)
        self._ws: ClientConnection | None = None
        self._initialize: tuple[str, Any] | None = None
        self._initialized: str | None = None
        self._closed = False

    async def start(self) -> None:
        self._ws = await self._connect()

    async def _connect(self) -> ClientConnection:
        s = self._settings
        if s.url is None:
            raise UpstreamUnavailable("no url configured")
        tls = ssl_context_for(s)  # wss:// with tls_* keys: custom CA / client certificate
        tls_option: dict[str, Any] = {"ssl": tls} if tls is not None else {}
        try:
            return await connect(
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
        if message.method == "initialize":
            self._initialize = (text, message.id)
        elif message.method == "notifications/initialized":
            self._initialized = text
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            if self._settings.reconnect_attempts > 0 and not self._closed:
                return  # lost with the connection; the receiver reconnects and fails what is in flight
            raise UpstreamClosed(_describe(exc)) from exc

    async def receive(self) -> str:
        if self._ws is None:
            raise UpstreamClosed("upstream not connected")
        while True:
            try:
                frame = await self._ws.recv()
            except ConnectionClosed as exc:
                if not self._closed and await self._reconnect():
                    raise UpstreamInterrupted("upstream connection re-established") from exc
                raise UpstreamClosed(_describe(exc)) from exc
            if isinstance(frame, str):
                return frame
            # A binary frame from the upstream breaks the one-text-frame convention: skip it.

    async def _reconnect(self) -> bool:
        """Re-establish the connection and resume the session; False when every attempt failed."""
        for attempt in range(self._settings.reconnect_attempts):
            await asyncio.sleep(0.2 * 2**attempt)
            try:
                ws = await self._connect()
            except UpstreamUnavailable:
                continue
            try:
                if self._initialize is not None:
                    await self._replay_handshake(ws, *self._initialize)
            except (ConnectionClosed, TimeoutError, ValueError):
                with contextlib.suppress(Exception):
                    await ws.close()
                continue
            self._ws = ws
            log.warning("upstream %s: connection re-established (attempt %d)", self._settings.name, attempt + 1)
            return True
        return False

    async def _replay_handshake(self, ws: ClientConnection, initialize: str, request_id: Any) -> None:
        await ws.send(initialize)
        async with asyncio.timeout(self._settings.connect_timeout):
            while True:
                frame = await ws.recv()
                try:
                    reply = loads(frame)  # the decoder every transport uses
                except ParseError:
                    continue
                if isinstance(reply, dict) and reply.get("id") == request_id and "method" not in reply:
                    if "error" in reply:
                        raise ValueError("upstream refused the replayed initialize")
                    break
        if self._initialized is not None:
            await ws.send(self._initialized)

    async def aclose(self) -> None:
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()


def _describe(exc: ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "upstream connection lost"
    return f"upstream closed the connection ({rcvd.code})"

"""The contract every upstream transport implements, and its factory."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Protocol
from urllib.parse import urlsplit

from guard.config import UpstreamSettings
from guard.jsonrpc import Message


class Upstream(Protocol):
    """One session's connection to an upstream MCP server.

    ``receive`` returns the next frame's text and raises
    :class:`~guard.errors.UpstreamClosed` when the upstream is gone (with a reason fit
    for a close frame). ``send`` raises the same when the message cannot be delivered.
    The parsed ``message`` accompanies the text for transports that mirror fields into
    headers (Streamable HTTP); it is never re-serialized by the transport.
    """

    async def start(self) -> None:
        """Connect or spawn; raises :class:`~guard.errors.UpstreamUnavailable`."""
        ...

    async def send(self, text: str, message: Message) -> None: ...

    async def receive(self) -> str: ...

    async def aclose(self) -> None:
        """Release the upstream (terminate the child, DELETE the HTTP session, close the socket)."""
        ...


def create_upstream(settings: UpstreamSettings, session_id: str, max_message_bytes: int) -> Upstream:
    """Build the upstream transport declared by ``settings`` for one client session."""
    if settings.transport == "stdio":
        from guard.transports.stdio import StdioUpstream

        return StdioUpstream(settings, session_id, max_message_bytes)
    if settings.transport == "websocket":
        from guard.transports.websocket import WebSocketUpstream

        return WebSocketUpstream(settings, max_message_bytes)
    from guard.transports.http import StreamableHttpUpstream

    return StreamableHttpUpstream(settings, max_message_bytes)


async def probe_tcp(url: str, timeout: float, tls: ssl.SSLContext | None = None) -> None:
    """Open and close one connection to ``url``'s host and port (with the TLS handshake if ``tls``).

    Raises ``OSError`` or ``TimeoutError`` when the endpoint cannot be reached.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port, ssl=tls), timeout)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()

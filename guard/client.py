"""A WebSocket transport for the official Python MCP SDK 2.x ``mcp.Client``.

The Python SDK 2.x dropped WebSocket; this restores it for talking to guard::

    from mcp import Client
    from guard.client import websocket_client

    async with Client(websocket_client("wss://guard.example/mcp/demo",
                                       headers={"Authorization": f"Bearer {token}"})) as client:
        tools = await client.list_tools()

Subprotocol ``mcp``, one JSON-RPC message per text frame. The token travels in the
``Authorization`` header of the handshake, never in the URL (MCP ``basic/authorization``).
Requires the ``mcp`` package (2.x) in the client's environment.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


@contextlib.asynccontextmanager
async def websocket_client(
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_size: int | None = 16 * 1024 * 1024,
    open_timeout: float = 10.0,
) -> AsyncIterator[tuple[Any, Any]]:
    """Connect to an MCP WebSocket endpoint and yield ``(read_stream, write_stream)`` for ``mcp.Client``."""
    import mcp_types
    from mcp.shared.message import SessionMessage

    kwargs: dict[str, Any] = {}
    if ssl_context is not None:
        kwargs["ssl"] = ssl_context
    async with connect(
        url,
        subprotocols=["mcp"],  # type: ignore[list-item]
        additional_headers=dict(headers or {}),
        max_size=max_size,
        open_timeout=open_timeout,
        **kwargs,
    ) as ws:
        # Streams are created only once connected, so a refused handshake leaks nothing.
        read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

        async def ws_reader() -> None:
            async with read_writer:
                try:
                    async for frame in ws:
                        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                        try:
                            message = mcp_types.jsonrpc_message_adapter.validate_json(text, by_name=False)
                        except ValueError as exc:
                            await read_writer.send(exc)
                            continue
                        await read_writer.send(SessionMessage(message))
                except (ConnectionClosed, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return

        async def ws_writer() -> None:
            async with write_reader:
                async for session_message in write_reader:
                    text = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    try:
                        await ws.send(text)
                    except ConnectionClosed:
                        return

        async with anyio.create_task_group() as tg:
            tg.start_soon(ws_reader)
            tg.start_soon(ws_writer)
            try:
                yield read_stream, write_stream
            finally:
                tg.cancel_scope.cancel()
                await ws.close()
                for stream in (read_stream, write_stream):
                    await stream.aclose()

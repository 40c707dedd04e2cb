"""The client side: an accepted starlette WebSocket, adapted to the relay's ClientConnection."""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket, WebSocketState


class StarletteClient:
    """Frames in and out of one accepted ASGI WebSocket connection."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self.disconnect_code: int | None = None
        """The close code the connection ended with, as the server saw it (1007: invalid UTF-8)."""

    async def receive(self) -> str | bytes | None:
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            self.disconnect_code = message.get("code")
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        data = message.get("bytes")
        return bytes(data) if data is not None else b""

    async def send(self, text: str) -> None:
        await self._ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self._ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await self._ws.close(code, reason)

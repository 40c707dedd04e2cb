"""uvicorn's HTTP protocol with a handshake deadline (slowloris defence).

uvicorn starts no timer when a TCP connection opens: a client that trickles its
request headers holds a connection forever. This subclass gives every new connection
``handshake_timeout`` seconds to finish its request headers (for guard: the WebSocket
upgrade request); connections that miss it are closed. Other connections are
unaffected because asyncio serves each one independently.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class DeadlineHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes connections whose request headers do not arrive in time."""

    handshake_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.handshake_timeout, self._deadline_passed)

    def on_headers_complete(self) -> None:
        self._cancel_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_with_deadline(timeout: float) -> type[DeadlineHttpProtocol]:
    """A protocol class bound to one timeout (uvicorn instantiates the class itself)."""
    return type("GuardHttpProtocol", (DeadlineHttpProtocol,), {"handshake_timeout": timeout})

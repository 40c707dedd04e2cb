"""uvicorn's HTTP protocol with a handshake deadline and request-head limits.

uvicorn starts no timer when a TCP connection opens: a client that trickles its request
headers holds a connection forever. This subclass gives every new connection
``handshake_timeout`` seconds to finish its request headers (for guard: the WebSocket
upgrade request); connections that miss it are closed. Other connections are unaffected
because asyncio serves each one independently.

It also bounds the request head itself, before any parser buffers it: a line longer than
``max_line_bytes`` or a head larger than ``max_head_bytes`` is answered at once with
``431 Request Header Fields Too Large`` (``414 URI Too Long`` for the request line) and the
connection is closed (RFC 6585 section 5, RFC 9110 section 15.5.15). The answer does not
depend on what the HTTP parser or the WebSocket library below would do with such a line:
some versions answered nothing and never closed the socket, so every such request pinned a
file descriptor. :func:`header_limits` derives the limits from ``auth.max_token_bytes`` so
that a bearer token up to that size always fits (and is then judged by authentication,
``401 token_too_large`` past it), and raises the WebSocket handshake parser's own line limit
to match (websockets' documented ``WEBSOCKETS_MAX_LINE_LENGTH`` knob, default 8192).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import websockets.http11
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("guard.server")

LINGER_SECONDS = 2.0
"""After a refusal, how long the rest of the request is read and discarded before closing."""
LINGER_BYTES = 1024 * 1024
"""...and how much of it, at most."""
DEFAULT_LINE_BYTES = 8192
"""The usual request-line and header-line limit (websockets, nginx ``large_client_header_buffers``)."""
HEAD_SLACK_BYTES = 16 * 1024
"""Room for every other header beside the longest line allowed."""
TOKEN_LINE_SLACK = 256
"""``Authorization: Bearer `` plus the authenticator's own 64 bytes of slack, with room to spare."""


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    max_line_bytes: int = DEFAULT_LINE_BYTES
    max_head_bytes: int = DEFAULT_LINE_BYTES + HEAD_SLACK_BYTES


def header_limits(max_token_bytes: int) -> HeaderLimits:
    """Limits under which ``Authorization: Bearer <token>`` fits for any token up to ``max_token_bytes``.

    A token a little longer still reaches the authenticator, which refuses it with a reason
    (401 ``token_too_large``); only a line past ``max_token_bytes + TOKEN_LINE_SLACK`` gets 431.
    Also raises ``websockets.http11.MAX_LINE_LENGTH`` to the line limit so the WebSocket handshake
    parser accepts what passed here; it is never lowered.
    """
    line = max(DEFAULT_LINE_BYTES, max_token_bytes + TOKEN_LINE_SLACK)
    websockets.http11.MAX_LINE_LENGTH = max(websockets.http11.MAX_LINE_LENGTH, line)
    return HeaderLimits(max_line_bytes=line, max_head_bytes=line + HEAD_SLACK_BYTES)


_REFUSALS = {
    414: (b"414 URI Too Long", "request_line_too_long"),
    431: (b"431 Request Header Fields Too Large", "header_too_large"),
}


class DeadlineHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes connections whose request headers are late or too large."""

    handshake_timeout: float = 10.0
    limits: HeaderLimits = HeaderLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._line_bytes = 0
        self._lines = 0
        self._refused = False
        self._discarded = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.call_later(self.handshake_timeout, self._deadline_passed)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        if self._in_head:
            status = self._measure_head(data)
            if status is not None:
                self._refuse(status)
                return
        super().data_received(data)

    def _measure_head(self, data: bytes) -> int | None:
        """Count the head's lines and bytes up to its blank line; the refusal status if over a limit."""
        limits = self.limits
        start = 0
        while self._in_head:
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline
            self._line_bytes += end - start
            self._head_bytes += end - start + (newline >= 0)
            if self._line_bytes > limits.max_line_bytes:
                return 414 if self._lines == 0 else 431
            if self._head_bytes > limits.max_head_bytes:
                return 431
            if newline < 0:
                return None
            if self._line_bytes <= 1 and self._lines > 0:  # "" or "\r": the head ends here
                self._in_head = False
            self._lines += 1
            self._line_bytes = 0
            start = newline + 1
        return None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._in_head, self._head_bytes, self._line_bytes, self._lines = True, 0, 0, 0  # keep-alive: next head

    def _refuse(self, status: int) -> None:
        """Answer 414/431 and close; the rest of the request is read and dropped for a moment first.

        Closing a socket with unread data makes the kernel send RST, which can destroy the answer
        before the client reads it; so guard half-closes after the answer (FIN), discards what
        still arrives, and closes when the client does, after ``LINGER_SECONDS``, past
        ``LINGER_BYTES``, or at the handshake deadline, whichever comes first.
        """
        line, reason = _REFUSALS[status]
        log.info("refused handshake: %s (%d) from %s", reason, status, self._peer())
        self._refused, self._in_head = True, False
        body = line[4:] + b"\n"
        self.transport.write(b"HTTP/1.1 " + line + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def eof_received(self) -> None:
        if self._refused:  # the client has sent everything and read the answer: done
            self.transport.close()
            return
        super().eof_received()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"

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
            if not self._refused:
                log.info("refused handshake: handshake_timeout from %s", self._peer())
            self.transport.close()


def protocol_with_deadline(timeout: float, limits: HeaderLimits | None = None) -> type[DeadlineHttpProtocol]:
    """A protocol class bound to one timeout and head limits (uvicorn instantiates the class itself)."""
    return type("GuardHttpProtocol", (DeadlineHttpProtocol,),
                {"handshake_timeout": timeout, "limits": limits or HeaderLimits()})

"""The HTTP client side of a session, as the relay sees it: many HTTP requests, one connection.

A WebSocket session is one socket both ways. Over HTTP the same session is a series of
POSTs, each waiting for *its* answer, plus (legacy era) an optional GET stream for what
the server sends on its own. :class:`HttpClientConnection` implements the relay's
``ClientConnection`` (``receive`` / ``send`` / ``close``) on top of that, so the HTTP
front door feeds the one relay and pipeline every transport uses (STYLE.md rule 15):

* ``receive`` yields the frames POSTed to the session, in arrival order;
* ``send`` routes each frame the relay emits: a response goes to the :class:`Exchange`
  of the POST that asked for it (its id), and only there; a server request or
  notification goes to the stream :meth:`HttpClientConnection._target` picks;
* ``close`` answers every POST still waiting with a JSON-RPC error, so each request
  still gets exactly one answer when a session ends under it.

Three routing modes:

* :attr:`Mode.SESSION` — legacy Streamable HTTP (2025-03-26 .. 2025-11-25). A progress
  notification goes to the POST whose request carries its ``progressToken``; other server
  messages go to the only POST stream open, else to the GET stream, else to the newest POST
  stream, else wait (bounded) for a GET stream (MCP 2025-11-25 ``basic/transports``:
  messages on a POST stream "SHOULD relate to the originating request"; guard cannot see
  relations over stdio, so it keeps them on the stream of the request in flight, which
  also keeps their order).
* :attr:`Mode.LEASE` — a pooled upstream session leased to one 2026-07-28 request at a
  time: everything the server says while leased belongs to that request. The era has no
  server->client requests (they ride in ``InputRequiredResult``); one that arrives anyway
  is refused to the upstream with ``-32601``, since the client cannot answer it.
* :attr:`Mode.STREAM` — the 2024-11-05 HTTP+SSE transport: every frame, responses
  included, goes to the one GET stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from guard import mcp
from guard.errors import ProtocolError
from guard.jsonrpc import ErrorCode, Kind, Message, RequestId, error_response, id_key, parse, serialize

log = logging.getLogger("guard.transports.http")


class Mode(enum.Enum):
    SESSION = "session"
    LEASE = "lease"
    STREAM = "stream"


class SessionClosed(Exception):
    """The session ended; the HTTP request that tried to use it gets 404."""


@dataclass(frozen=True, slots=True)
class Item:
    """One frame for an HTTP response; ``final`` marks the answer that ends it (``text`` None: stream over)."""

    text: str | None
    final: bool


class Exchange:
    """The outbound side of one HTTP request (a POST awaiting its answer, or a GET stream).

    ``streaming`` says the client accepts ``text/event-stream``: only then may frames other
    than the final answer be routed here. Delivery applies backpressure (a bounded queue)
    until the HTTP side abandons the exchange (the client went away), after which frames
    are dropped instead of blocking the session.
    """

    def __init__(self, request_id: RequestId | None, *, streaming: bool, progress_token: Any = None,
                 capacity: int = 64) -> None:
        self.request_id = request_id
        self.streaming = streaming
        self.progress_token = progress_token
        self._items: asyncio.Queue[Item] = asyncio.Queue(maxsize=max(capacity, 1))
        self.done = False
        self.abandoned = False

    async def put(self, text: str | None, final: bool) -> None:
        if self.abandoned or self.done:
            return
        if final:
            self.done = True
        await self._items.put(Item(text, final))

    async def next(self, timeout: float | None = None) -> Item | None:
        """The next frame, or ``None`` when ``timeout`` seconds pass without one."""
        if timeout is None:
            return await self._items.get()
        try:
            return await asyncio.wait_for(self._items.get(), timeout)
        except TimeoutError:
            return None

    def abandon(self) -> None:
        """The HTTP client is gone: drop what is queued and everything routed here from now on."""
        self.abandoned = True
        while not self._items.empty():
            self._items.get_nowait()


_CLOSE_ERRORS = {
    1001: (ErrorCode.SHUTTING_DOWN, "Server shutting down", "shutting_down"),
    1008: (ErrorCode.UNAUTHENTICATED, "Unauthenticated: token expired", "expired"),
}


def close_error(request_id: RequestId | None, code: int, reason: str) -> str:
    """The JSON-RPC error a request still waiting gets when its session closes (code/reason of the close)."""
    err_code, text, data_reason = _CLOSE_ERRORS.get(
        code, (ErrorCode.UPSTREAM_UNAVAILABLE, "Session closed", "session_closed"))
    return serialize(error_response(request_id, err_code, text, {"reason": data_reason, "detail": reason}))


class HttpClientConnection:
    """The relay's ``ClientConnection`` for one HTTP session (see the module docstring)."""

    def __init__(self, mode: Mode, *, capacity: int = 64, backlog: int = 64) -> None:
        self.mode = mode
        self.capacity = capacity
        self._inbound: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max(capacity, 1))
        self._waiting: dict[tuple[type, RequestId], Exchange] = {}
        self._backlog: deque[tuple[str, Message]] = deque()
        self._backlog_max = max(backlog, 1)
        self.listener: Exchange | None = None
        self.closed: tuple[int, str] | None = None
        self.ended = asyncio.Event()

    # The relay's side ------------------------------------------------------------------

    async def receive(self) -> str | bytes | None:
        text, counted = await self._inbound.get()
        if counted:
            self._slots.release()
        return text

    async def send(self, text: str) -> None:
        try:
            message = parse(text)
        except ProtocolError:  # the relay only emits what it serialized; never expected
            log.warning("dropped an unparseable frame on its way to an HTTP client")
            return
        if message.kind.is_response:
            exchange = self._waiting.pop(id_key(message.id), None) if message.id is not None else None
            if exchange is not None:
                await exchange.put(text, final=True)
            elif self.mode is Mode.STREAM and self.listener is not None:
                await self.listener.put(text, final=False)
            else:
                log.debug("dropped a response whose HTTP request is gone")
            return
        target = self._target(message)
        if target is not None:
            await target.put(text, final=False)
        elif self.mode is Mode.LEASE:
            if message.kind is Kind.REQUEST and message.id is not None:
                self._refuse(message.id, ErrorCode.METHOD_NOT_FOUND,
                             "The client cannot answer server requests over stateless HTTP (2026-07-28)")
        else:
            self._hold(text, message)

    async def close(self, code: int, reason: str) -> None:
        if self.closed is not None:
            return
        self.closed = (code, reason)
        waiting = list(self._waiting.values())
        self._waiting.clear()
        for exchange in waiting:
            await exchange.put(close_error(exchange.request_id, code, reason), final=True)
        if self.listener is not None:
            await self.listener.put(None, final=True)
            self.listener = None
        self._backlog.clear()
        self.ended.set()

    # The HTTP side -----------------------------------------------------------------------

    def open(self, message: Message, *, streaming: bool) -> Exchange | None:
        """Register the exchange for a POSTed request; ``None`` if its id is already awaiting an answer.

        Answering a second request with the same id would hand one of the two POSTs the
        other's response, so a duplicate is refused before it reaches the relay.
        """
        if self.closed is not None:
            raise SessionClosed
        request_id = message.id
        if request_id is None:
            return None
        key = id_key(request_id)
        if key in self._waiting:
            return None
        token = mcp.meta_of(message.params).get("progressToken")
        exchange = Exchange(request_id, streaming=streaming, progress_token=token, capacity=self.capacity)
        self._waiting[key] = exchange
        return exchange

    def forget(self, exchange: Exchange) -> None:
        """The client of ``exchange`` went away; its answer, when it comes, is dropped."""
        exchange.abandon()
        if exchange.request_id is not None and self._waiting.get(id_key(exchange.request_id)) is exchange:
            del self._waiting[id_key(exchange.request_id)]

    async def submit(self, text: str) -> None:
        """Queue a POSTed frame for the relay (waits while ``capacity`` frames are queued)."""
        if self.closed is not None:
            raise SessionClosed
        await self._slots.acquire()
        if self.closed is not None:
            self._slots.release()
            raise SessionClosed
        self._inbound.put_nowait((text, True))

    async def attach(self, exchange: Exchange) -> None:
        """Make ``exchange`` the session's GET stream (replacing an older one) and flush what waited."""
        if self.closed is not None:
            raise SessionClosed
        previous, self.listener = self.listener, exchange
        if previous is not None:
            await previous.put(None, final=True)
        while self._backlog and self.listener is exchange:
            text, _ = self._backlog.popleft()
            await exchange.put(text, final=False)

    def detach(self, exchange: Exchange) -> None:
        exchange.abandon()
        if self.listener is exchange:
            self.listener = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # Routing -----------------------------------------------------------------------------

    def _target(self, message: Message) -> Exchange | None:
        if self.mode is Mode.STREAM:
            return self.listener
        streams = [e for e in self._waiting.values() if e.streaming and not e.abandoned]
        if self.mode is Mode.LEASE:
            return streams[0] if streams else None
        if message.method == "notifications/progress":
            token = message.params.get("progressToken")
            for exchange in streams:
                if token is not None and exchange.progress_token == token:
                    return exchange
        if len(streams) == 1:
            return streams[0]
        if self.listener is not None and not self.listener.abandoned:
            return self.listener
        return streams[-1] if streams else None

    def _hold(self, text: str, message: Message) -> None:
        """Keep a server message until a GET stream opens; past the bound, the oldest goes."""
        if len(self._backlog) >= self._backlog_max:
            _, oldest = self._backlog.popleft()
            log.warning("HTTP session: no stream to deliver a server %s to; dropped", oldest.method)
            if oldest.kind is Kind.REQUEST and oldest.id is not None:
                self._refuse(oldest.id, ErrorCode.INTERNAL_ERROR, "The client is not listening for server requests")
        self._backlog.append((text, message))

    def _refuse(self, request_id: RequestId, code: int, text: str) -> None:
        """Answer a server request on the client's behalf (through the relay, so it is audited)."""
        with contextlib.suppress(RuntimeError):
            self._inbound.put_nowait((serialize(error_response(request_id, code, text)), False))

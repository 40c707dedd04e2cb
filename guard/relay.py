"""The relay: moves messages between one client connection and its upstream.

For every frame it parses, correlates (via :class:`~guard.session.Session`), runs the
pipeline, and forwards, answers or drops. Invariants it keeps:

* every client request gets exactly one response: the upstream's, or an error guard
  generates (bad input, denial, duplicate id, upstream gone);
* nothing invalid, oversized or denied reaches the upstream;
* responses are delivered only if they answer a pending request of this session;
* a slow client applies backpressure: frames to it go through one bounded queue,
  and when it is full guard stops reading from the upstream.

Bad input (issue "relay", all tested): not JSON -> -32700 with ``id: null``; JSON but
not JSON-RPC, or a batch -> -32600; binary frame -> close 1003; over the size limit ->
close 1009; upstream gone -> each pending request gets error -31004, then close 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from guard import mcp
from guard.context import CloseRequest, Direction, MessageContext, RequestRecord
from guard.errors import InvalidRequest, ProtocolError, UpstreamClosed
from guard.jsonrpc import ErrorCode, Kind, Message, error_response, parse, serialize
from guard.pipeline import Pipeline
from guard.session import InFlightLimitExceeded, Session
from guard.transports.base import Upstream

log = logging.getLogger("guard.relay")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013


def close_reason(text: str) -> str:
    """A WebSocket close reason fits in 123 bytes (RFC 6455 section 5.5)."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:120].decode("utf-8", "ignore") + "..."


class ClientConnection(Protocol):
    """The client side of a session, as the relay sees it."""

    async def receive(self) -> str | bytes | None:
        """The next frame; ``None`` once the client has gone."""
        ...

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Relay:
    """Runs one session until either side ends it; returns the close code and reason."""

    def __init__(
        self,
        *,
        session: Session,
        pipeline: Pipeline,
        client: ClientConnection,
        upstream: Upstream,
        max_message_bytes: int,
        outbound_queue: int = 64,
    ) -> None:
        self._session = session
        self._pipeline = pipeline
        self._client = client
        self._upstream = upstream
        self._max_bytes = max_message_bytes
        self._out: asyncio.Queue[str | _Close] = asyncio.Queue(maxsize=outbound_queue)
        self._closing: _Close | None = None
        self._upstream_dead = False

    @property
    def info(self) -> Any:
        return self._session.info

    async def run(self) -> tuple[int, str]:
        """Relay until the client leaves, the upstream dies, or a stage closes the session."""
        writer = asyncio.create_task(self._write_client(), name="to-client")
        reader = asyncio.create_task(self._read_client(), name="from-client")
        pump = asyncio.create_task(self._read_upstream(), name="from-upstream")
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            if self._closing is not None and not writer.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(writer), 5.0)
        finally:
            for task in (reader, pump, writer):
                task.cancel()
            for task in (reader, pump, writer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._closing is not None:
            return self._closing.code, self._closing.reason
        return CLOSE_NORMAL, "client closed"

    # Output -----------------------------------------------------------------------

    async def _emit(self, message: Message | dict[str, Any]) -> None:
        if self._closing is None:
            await self._out.put(serialize(message))

    async def _close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self._closing = _Close(code, close_reason(reason))
            await self._out.put(self._closing)

    async def _write_client(self) -> None:
        while True:
            item = await self._out.get()
            if isinstance(item, _Close):
                with contextlib.suppress(Exception):
                    await self._client.close(item.code, item.reason)
                return
            try:
                await self._client.send(item)
            except Exception:  # the client went away mid-send; the reader notices too
                return

    async def _to_upstream(self, message: Message) -> None:
        try:
            await self._upstream.send(serialize(message), message)
        except UpstreamClosed as exc:
            await self._upstream_gone(str(exc))

    # Client -> upstream -------------------------------------------------------------

    async def _read_client(self) -> None:
        while self._closing is None:
            frame = await self._client.receive()
            if frame is None:
                return
            if isinstance(frame, bytes):
                await self._close(CLOSE_UNSUPPORTED_DATA, "binary frames are not supported: send JSON-RPC text")
                return
            if len(frame) > self._max_bytes or (
                len(frame) * 4 > self._max_bytes and len(frame.encode("utf-8", "surrogatepass")) > self._max_bytes
            ):
                await self._close(CLOSE_MESSAGE_TOO_BIG, f"message exceeds {self._max_bytes} bytes")
                return
            try:
                message = parse(frame)
            except ProtocolError as exc:
                await self._emit(error_response(exc.request_id, exc.code, str(exc)))
                continue
            await self._from_client(message)

    async def _from_client(self, message: Message) -> None:
        if message.kind is Kind.REQUEST:
            await self._client_request(message)
        elif message.kind is Kind.NOTIFICATION:
            await self._client_notification(message)
        else:
            await self._client_response(message)

    async def _client_request(self, message: Message) -> None:
        method = message.method or ""
        request_id = message.id
        if request_id is None:  # classify() guarantees an id on requests
            return
        target = mcp.target_of(method, message.params)
        try:
            record = self._session.open_client_request(request_id, method, target, message.params)
        except InFlightLimitExceeded as exc:
            await self._emit(error_response(request_id, ErrorCode.TOO_MANY_REQUESTS_IN_FLIGHT, str(exc),
                                            {"reason": "too_many_in_flight"}))
            return
        except InvalidRequest as exc:
            await self._emit(error_response(request_id, exc.code, str(exc)))
            return
        ctx = MessageContext(self._session.info, Direction.CLIENT_TO_SERVER, message, method, target, record)
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            self._session.close_client_request(request_id)
            await self._emit(error_response(request_id, verdict.code, verdict.error_message, verdict.data))
            await self._maybe_close(verdict.close)
            return
        if self._upstream_dead:
            # Raced with the upstream's death: answer here, never silently.
            self._session.close_client_request(request_id)
            await self._emit(error_response(request_id, ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream unavailable"))
            return
        record.params = ctx.message.params
        await self._to_upstream(ctx.message)

    async def _client_notification(self, message: Message) -> None:
        method = message.method or ""
        ctx = MessageContext(self._session.info, Direction.CLIENT_TO_SERVER, message, method,
                             mcp.target_of(method, message.params))
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            await self._maybe_close(verdict.close)
            return
        if method == "notifications/cancelled":
            self._session.cancel_client_request(message.params.get("requestId"))
        await self._to_upstream(ctx.message)

    async def _client_response(self, message: Message) -> None:
        request_id = message.id
        record = self._session.close_server_request(request_id) if request_id is not None else None
        if record is None:
            log.warning("session %s: dropped a client response that answers no pending server request",
                        self._session.info.id)
            return
        ctx = MessageContext(self._session.info, Direction.CLIENT_TO_SERVER, message, record.method, None, record)
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            await self._to_upstream(error_response(record.id, verdict.code, verdict.error_message, verdict.data))
            await self._maybe_close(verdict.close)
            return
        await self._to_upstream(ctx.message)

    async def _maybe_close(self, close: CloseRequest | None) -> None:
        if close is not None:
            await self._close(close.code, close.reason)

    # Upstream -> client -------------------------------------------------------------

    async def _read_upstream(self) -> None:
        while True:
            try:
                text = await self._upstream.receive()
            except UpstreamClosed as exc:
                await self._upstream_gone(str(exc))
                return
            try:
                message = parse(text)
            except ProtocolError as exc:
                await self._bad_upstream_frame(exc)
                continue
            await self._from_upstream(message)

    async def _bad_upstream_frame(self, exc: ProtocolError) -> None:
        log.warning("session %s: upstream sent an invalid frame (%s)", self._session.info.id, type(exc).__name__)
        if exc.request_id is None:
            return
        record = self._session.close_client_request(exc.request_id)
        if record is not None:
            await self._answer_locally(record, ErrorCode.UPSTREAM_ERROR, "Upstream sent an invalid response",
                                       "invalid_upstream_response")

    async def _from_upstream(self, message: Message) -> None:
        if message.kind is Kind.REQUEST:
            await self._server_request(message)
        elif message.kind is Kind.NOTIFICATION:
            await self._server_notification(message)
        else:
            await self._server_response(message)

    async def _server_request(self, message: Message) -> None:
        method = message.method or ""
        request_id = message.id
        if request_id is None:
            return
        try:
            record = self._session.open_server_request(request_id, method, message.params)
        except InvalidRequest as exc:
            await self._to_upstream(error_response(request_id, exc.code, str(exc)))
            return
        ctx = MessageContext(self._session.info, Direction.SERVER_TO_CLIENT, message, method, None, record)
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            self._session.close_server_request(request_id)
            await self._to_upstream(error_response(request_id, verdict.code, verdict.error_message, verdict.data))
            return
        record.params = ctx.message.params
        await self._emit(ctx.message)

    async def _server_notification(self, message: Message) -> None:
        method = message.method or ""
        ctx = MessageContext(self._session.info, Direction.SERVER_TO_CLIENT, message, method, None)
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            return
        if method == "notifications/cancelled":
            self._session.cancel_server_request(message.params.get("requestId"))
        await self._emit(ctx.message)

    async def _server_response(self, message: Message) -> None:
        request_id = message.id
        record = self._session.close_client_request(request_id) if request_id is not None else None
        if record is None:
            log.warning("session %s: dropped an upstream response that answers no pending request",
                        self._session.info.id)
            return
        ctx = MessageContext(self._session.info, Direction.SERVER_TO_CLIENT, message, record.method,
                             record.target, record)
        ctx.upstream_outcome = _outcome(message)
        if record.method == mcp.INITIALIZE and isinstance(message.result, dict):
            version = message.result.get("protocolVersion")
            if isinstance(version, str):
                self._session.info.protocol_version = version
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            await self._emit(error_response(record.id, verdict.code, verdict.error_message, verdict.data))
            await self._maybe_close(verdict.close)
            return
        await self._emit(ctx.message)

    async def _answer_locally(self, record: RequestRecord, code: int, text: str, reason: str) -> None:
        """Answer a pending client request with an error guard generates (still audited)."""
        error = error_response(record.id, code, text, {"reason": reason})
        ctx = MessageContext(self._session.info, Direction.SERVER_TO_CLIENT, error, record.method, record.target,
                             record)
        ctx.upstream_outcome = reason
        with contextlib.suppress(Exception):
            await self._pipeline.run(ctx)
        await self._emit(error)

    async def _upstream_gone(self, reason: str) -> None:
        if self._upstream_dead:
            return
        self._upstream_dead = True
        log.warning("session %s: upstream %s gone: %s", self._session.info.id, self._session.info.server, reason)
        for record in self._session.drain_client_requests():
            await self._answer_locally(record, ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream unavailable",
                                       "upstream_closed")
        self._session.drain_server_requests()
        await self._close(CLOSE_INTERNAL_ERROR, f"upstream closed: {reason}")


def _outcome(message: Message) -> str:
    if message.kind is Kind.ERROR:
        error = message.error or {}
        return f"error:{error.get('code')}"
    result = message.result
    if isinstance(result, dict) and result.get("isError") is True:
        return "is_error"
    return "ok"

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
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from guard import mcp
from guard.context import CloseRequest, Direction, Event, EventKind, MessageContext, RequestRecord, Verdict
from guard.errors import InvalidRequest, ProtocolError, UpstreamClosed, UpstreamInterrupted
from guard.jsonrpc import ErrorCode, Kind, Message, RequestId, error_response, id_key, notification, parse, serialize
from guard.limits import CircuitBreaker, RateLimiter
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


@dataclass
class RelayLimits:
    """Per-session limits (see ``[server]`` and ``[upstreams.NAME]`` settings)."""

    max_message_bytes: int = 1024 * 1024
    outbound_queue: int = 64
    call_timeout: float = 0.0
    idle_timeout: float = 0.0
    rate_limiter: RateLimiter | None = None
    breaker: CircuitBreaker | None = None
    principal_key: str = ""
    exempt_from_timeout: frozenset[str] = field(default_factory=lambda: frozenset({mcp.SUBSCRIPTIONS_LISTEN}))


class Relay:
    """Runs one session until either side ends it; returns the close code and reason."""

    def __init__(
        self,
        *,
        session: Session,
        pipeline: Pipeline,
        client: ClientConnection,
        upstream: Upstream,
        limits: RelayLimits | None = None,
    ) -> None:
        self._session = session
        self._pipeline = pipeline
        self._client = client
        self._upstream = upstream
        self._limits = limits or RelayLimits()
        self._max_bytes = self._limits.max_message_bytes
        self._out: asyncio.Queue[str | _Close] = asyncio.Queue(maxsize=self._limits.outbound_queue)
        self._closing: _Close | None = None
        self._upstream_dead = False
        # Per-call timeouts: one deadline per pending request, in arming order, which is deadline
        # order (a session has one call_timeout), and a single loop timer for the earliest one.
        # A libuv timer per request cost ~6% of guard's CPU per call (bench/README.md).
        self._deadlines: dict[tuple[type, RequestId], tuple[float, RequestId]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._last_activity = time.monotonic()
        self.draining = False
        """Set when guard shuts down: new requests get -31012, in-flight ones may finish."""

    @property
    def in_flight(self) -> int:
        return self._session.client_in_flight

    async def shutdown(self, code: int, reason: str) -> None:
        """Close the client connection after what is already queued (graceful drain)."""
        await self._close(code, reason)

    async def run(self) -> tuple[int, str]:
        """Relay until the client leaves, the upstream dies, or a stage closes the session."""
        writer = asyncio.create_task(self._write_client(), name="to-client")
        reader = asyncio.create_task(self._read_client(), name="from-client")
        pump = asyncio.create_task(self._read_upstream(), name="from-upstream")
        watchdog = asyncio.create_task(self._idle_watchdog(), name="idle")
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            if self._closing is not None and not writer.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(writer), 5.0)
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
            self._deadlines.clear()
            tasks = (reader, pump, writer, watchdog, *self._background)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._closing is not None:
            return self._closing.code, self._closing.reason
        return CLOSE_NORMAL, "client closed"

    async def _idle_watchdog(self) -> None:
        idle = self._limits.idle_timeout
        if idle <= 0:
            return
        while self._closing is None:
            await asyncio.sleep(min(idle / 4, 5.0))
            quiet = time.monotonic() - self._last_activity
            if quiet >= idle and self._session.client_in_flight == 0:
                await self._close(CLOSE_GOING_AWAY, "idle timeout")
                return

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
            self._last_activity = time.monotonic()
            if isinstance(frame, bytes):
                await self._protocol_error(CLOSE_UNSUPPORTED_DATA, "binary_frame")
                await self._close(CLOSE_UNSUPPORTED_DATA, "binary frames are not supported: send JSON-RPC text")
                return
            if len(frame) > self._max_bytes or (
                len(frame) * 4 > self._max_bytes and len(frame.encode("utf-8", "surrogatepass")) > self._max_bytes
            ):
                await self._protocol_error(CLOSE_MESSAGE_TOO_BIG, "message_too_big")
                await self._close(CLOSE_MESSAGE_TOO_BIG, f"message exceeds {self._max_bytes} bytes")
                return
            try:
                message = parse(frame)
            except ProtocolError as exc:
                batch = frame.lstrip().startswith("[")
                await self._protocol_error(exc.code, "batch_rejected" if batch else
                                           ("parse_error" if exc.code == ErrorCode.PARSE_ERROR else "invalid_request"))
                await self._emit(error_response(exc.request_id, exc.code, str(exc)))
                continue
            await self._from_client(message)

    async def _protocol_error(self, code: int, reason: str) -> None:
        """Frames refused before they become messages still leave an audit trail (e.g. batch smuggling)."""
        info = self._session.info
        await self._pipeline.emit(Event(EventKind.PROTOCOL_ERROR, server=info.server, session=info,
                                        client_addr=info.client_addr, code=int(code), reason=reason))

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
        refusal = self._admit(method)
        if refusal is not None:
            ctx.verdict = refusal
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
        self._arm_timeout(request_id, method)
        await self._to_upstream(ctx.message)

    def _admit(self, method: str) -> Verdict | None:
        """Limits checked before any stage: drain, per-principal rate, circuit breaker."""
        limits = self._limits
        if self.draining:
            return Verdict.reject(ErrorCode.SHUTTING_DOWN, "Server shutting down", {"reason": "shutting_down"},
                                  stage="limits")
        if limits.rate_limiter is not None and not limits.rate_limiter.allow(limits.principal_key):
            return Verdict.reject(ErrorCode.RATE_LIMITED, "Rate limit exceeded", {"reason": "rate_limited"},
                                  stage="limits")
        if limits.breaker is not None and not limits.breaker.allow():
            return Verdict.reject(ErrorCode.CIRCUIT_OPEN, "Upstream temporarily unavailable",
                                  {"reason": "circuit_open"}, stage="limits")
        return None

    def _arm_timeout(self, request_id: RequestId, method: str) -> None:
        timeout = self._limits.call_timeout
        if timeout <= 0 or method in self._limits.exempt_from_timeout:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._deadlines[id_key(request_id)] = (deadline, request_id)
        if self._sweeper is None:
            self._sweeper = loop.call_at(deadline, self._sweep)

    def _disarm_timeout(self, request_id: RequestId) -> None:
        self._deadlines.pop(id_key(request_id), None)  # the sweeper skips it; no timer to cancel

    def _sweep(self) -> None:
        """Time out every request whose deadline passed, then wait for the next deadline."""
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._deadlines:
            key, (deadline, request_id) = next(iter(self._deadlines.items()))
            if deadline > now:
                self._sweeper = loop.call_at(deadline, self._sweep)
                return
            del self._deadlines[key]
            self._timed_out(request_id)

    def _timed_out(self, request_id: RequestId) -> None:
        self._deadlines.pop(id_key(request_id), None)
        record = self._session.close_client_request(request_id)
        if record is None:
            return
        if self._limits.breaker is not None:
            self._limits.breaker.failure()
        task = asyncio.create_task(self._answer_timeout(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _answer_timeout(self, record: RequestRecord) -> None:
        """Tell the upstream to stop (MCP ``notifications/cancelled``) and answer the client."""
        cancel = notification("notifications/cancelled",
                              {"requestId": record.id, "reason": "guard: upstream call timed out"})
        await self._to_upstream(cancel)
        await self._answer_locally(record, ErrorCode.UPSTREAM_TIMEOUT, "Upstream timed out", "upstream_timeout")

    async def _client_notification(self, message: Message) -> None:
        method = message.method or ""
        ctx = MessageContext(self._session.info, Direction.CLIENT_TO_SERVER, message, method,
                             mcp.target_of(method, message.params))
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            await self._maybe_close(verdict.close)
            return
        if method == "notifications/cancelled":
            cancelled = self._session.cancel_client_request(message.params.get("requestId"))
            if cancelled is not None:
                self._disarm_timeout(cancelled.id)
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
            except UpstreamInterrupted:
                await self._upstream_interrupted()
                continue
            self._last_activity = time.monotonic()
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
        self._disarm_timeout(record.id)
        if self._limits.breaker is not None:
            self._limits.breaker.success()
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

    async def _upstream_interrupted(self) -> None:
        """The transport reconnected: what was in flight is lost, so answer it; the session goes on."""
        log.warning("session %s: upstream %s reconnected", self._session.info.id, self._session.info.server)
        if self._limits.breaker is not None:
            self._limits.breaker.failure()
        for record in self._session.drain_client_requests():
            self._disarm_timeout(record.id)
            await self._answer_locally(record, ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream connection was reset",
                                       "upstream_reconnected")
        self._session.drain_server_requests()

    async def _upstream_gone(self, reason: str) -> None:
        if self._upstream_dead:
            return
        self._upstream_dead = True
        if self._limits.breaker is not None and self._closing is None:
            self._limits.breaker.failure()
        log.warning("session %s: upstream %s gone: %s", self._session.info.id, self._session.info.server, reason)
        for record in self._session.drain_client_requests():
            self._disarm_timeout(record.id)
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

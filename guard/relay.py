"""The relay: moves messages between one client connection and its upstream.

For every frame it parses, correlates (via :class:`~guard.session.Session`), runs the
pipeline, and forwards, answers or drops. Invariants it keeps (the defined outcomes are
tabled in docs/how-it-works.md):

* every client request gets exactly one response: the upstream's, or an error guard
  generates, through the pipeline so the audit trail records it; a session never ends with
  a request unanswered (upstream death -31004, timeout -31005, shutdown -31012, token expiry
  -31003, an exception inside guard -32603), and no exception kills a pump in silence;
* nothing invalid, oversized or denied reaches the upstream, and nothing it could read
  differently from guard (:func:`guard.jsonrpc.loads`);
* responses are delivered only if they answer a pending request of this session, matched by
  the id guard gave the request upstream (:mod:`guard.session`);
* a slow client applies backpressure: frames to it go through one bounded queue,
  and when it is full guard stops reading from the upstream;
* circuit breaker tickets (:class:`~guard.limits.CircuitBreaker`) are taken before the
  stages run and released on every outcome;
* with tracing on, each client message's trace (:mod:`guard.tracing`) starts when the relay
  takes the message and ends once, when the client has its answer (or the message went on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from guard import mcp
from guard.context import Direction, Event, EventKind, MessageContext, RequestRecord, Verdict
from guard.deadlines import Deadlines
from guard.errors import InvalidRequest, ProtocolError, UpstreamClosed, UpstreamInterrupted
from guard.jsonrpc import ErrorCode, Kind, Message, RequestId, error_response, notification, parse, serialize
from guard.limits import CircuitBreaker, Outcome, RateLimit
from guard.pipeline import Pipeline
from guard.session import TOO_MANY_IN_FLIGHT, InFlightLimitExceeded, Session
from guard.tracing import NO_TRACER, MessageTrace, Tracer
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
    rate_limiter: RateLimit | None = None
    breaker: CircuitBreaker | None = None
    principal_key: str = ""
    exempt_from_timeout: frozenset[str] = field(default_factory=lambda: frozenset({mcp.SUBSCRIPTIONS_LISTEN}))


SHUTDOWN_ERROR: tuple[int, str, str] = (ErrorCode.SHUTTING_DOWN, "Server shutting down", "shutting_down")
"""What a request still pending when guard shuts down is answered with."""
EXPIRED_ERROR: tuple[int, str, str] = (ErrorCode.UNAUTHENTICATED, "Unauthenticated: token expired", "expired")
"""What a request still pending when the session's token expires is answered with."""
INTERNAL_ERROR_REASON = "internal_error"
UNMATCHED_RESPONSE = "unmatched_response"
"""Audit reason of a response that answers no pending request of the session (dropped)."""
REQUEST_CANCELLED = "request_cancelled"
"""Audit reason of an upstream's late answer to a request the client cancelled (dropped)."""


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
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self._session = session
        self._tracer = tracer
        self._pipeline = pipeline
        self._client = client
        self._upstream = upstream
        self._limits = limits or RelayLimits()
        self._max_bytes = self._limits.max_message_bytes
        self._out: asyncio.Queue[str | _Close] = asyncio.Queue(maxsize=self._limits.outbound_queue)
        self._closing: _Close | None = None
        self._upstream_dead = False
        self._deadlines = Deadlines(self._timed_out)
        self._background: set[asyncio.Task[None]] = set()
        self._last_activity = time.monotonic()
        self.draining = False
        """Set when guard shuts down: new requests get -31012, in-flight ones may finish."""

    @property
    def in_flight(self) -> int:
        """Requests whose answer the client still expects (cancelled ones excluded)."""
        return self._session.client_awaiting

    async def shutdown(self, code: int, reason: str, error: tuple[int, str, str] | None = None) -> None:
        """End the session: answer what is pending, then close after what is already queued.

        Every request still awaiting its answer gets ``error`` (code, message, ``data.reason``;
        by default -31012 ``shutting_down``), recorded by the pipeline like any answer, and the
        upstream is told to stop it (``notifications/cancelled``). Then the connection closes
        with ``code`` and ``reason``.
        """
        await self._abort_pending(*(error or SHUTDOWN_ERROR))
        await self._close(code, reason)

    async def run(self) -> tuple[int, str]:
        """Relay until the client leaves, the upstream dies, or a stage closes the session."""
        writer = asyncio.create_task(self._write_client(), name="to-client")
        reader = asyncio.create_task(self._guarded(self._read_client()), name="from-client")
        pump = asyncio.create_task(self._guarded(self._read_upstream()), name="from-upstream")
        watchdog = asyncio.create_task(self._idle_watchdog(), name="idle")
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            if self._closing is not None and not writer.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(writer), 5.0)
        finally:
            self._deadlines.close()
            tasks = (reader, pump, writer, watchdog, *self._background)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for record in self._session.drain_client_requests():  # session end releases every ticket
                self._release(record, Outcome.NEUTRAL)
                record.trace.finish("session_closed")
        if self._closing is not None:
            return self._closing.code, self._closing.reason
        return CLOSE_NORMAL, "client closed"

    async def _guarded(self, loop: Coroutine[Any, Any, None]) -> None:
        """Run a pump; an exception that escapes it ends the session with a defined outcome.

        Per-frame failures are handled where the frame is; this catches what is left (a bug in
        guard itself): every pending request is answered -32603 and the session closes 1011.
        """
        try:
            await loop
        except Exception:
            log.exception("session %s: internal error, closing the session", self._session.info.id)
            await self._abort_pending(ErrorCode.INTERNAL_ERROR, "Internal error", INTERNAL_ERROR_REASON)
            await self._close(CLOSE_INTERNAL_ERROR, "internal error")

    async def _idle_watchdog(self) -> None:
        idle = self._limits.idle_timeout
        if idle <= 0:
            return
        while self._closing is None:
            await asyncio.sleep(min(idle / 4, 5.0))
            quiet = time.monotonic() - self._last_activity
            if quiet >= idle and self._session.client_awaiting == 0:
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
                await self._protocol_error(exc.code, exc.reason or ("batch_rejected" if batch else (
                    "parse_error" if exc.code == ErrorCode.PARSE_ERROR else "invalid_request")))
                await self._emit(error_response(exc.request_id, exc.code, str(exc)))
                continue
            await self._from_client(message)

    async def _record_refusal(self, direction: Direction, message: Message, method: str | None,
                              target: str | None, code: int, text: str, reason: str,
                              request: RequestRecord | None = None) -> None:
        """Record a message refused before the stages ran (issue 15: no refusal without a record).

        The stages that do not see rejections are skipped; audit records a ``deny`` with
        stage ``session`` and ``reason`` (``duplicate_id``, ``too_many_in_flight``,
        ``unmatched_response``, ``request_cancelled``). Whatever happens here, the message
        stays refused.
        """
        ctx = MessageContext(self._session.info, direction, message, method, target, request)
        ctx.verdict = Verdict.reject(code, text, {"reason": reason}, stage="session")
        try:
            await self._pipeline.run(ctx)
        except Exception:
            log.exception("session %s: recording a refusal failed", self._session.info.id)

    async def _protocol_error(self, code: int, reason: str) -> None:
        """Frames refused before they become messages still leave an audit trail (e.g. batch smuggling)."""
        info = self._session.info
        await self._pipeline.emit(Event(EventKind.PROTOCOL_ERROR, server=info.server, session=info,
                                        client_addr=info.client_addr, code=int(code), reason=reason))

    async def _from_client(self, message: Message) -> None:
        if message.kind is Kind.REQUEST:
            await self._client_request(message)
            return
        try:
            if message.kind is Kind.NOTIFICATION:
                await self._client_notification(message)
            else:
                await self._client_response(message)
        except Exception:  # a notification or response has no one to answer: drop it, keep the session
            log.exception("session %s: internal error on a client %s; dropped", self._session.info.id,
                          message.kind.value)

    async def _client_request(self, message: Message) -> None:
        method = message.method or ""
        request_id = message.id
        if request_id is None:  # classify() guarantees an id on requests
            return
        target = mcp.target_of(method, message.params)
        trace = self._tracer.start(self._session.info, message)
        try:
            record = self._session.open_client_request(request_id, method, target, message.params)
        except InFlightLimitExceeded as over:
            await self._record_refusal(Direction.CLIENT_TO_SERVER, message, method, target,
                                       ErrorCode.TOO_MANY_REQUESTS_IN_FLIGHT, str(over), TOO_MANY_IN_FLIGHT)
            await self._emit(error_response(request_id, ErrorCode.TOO_MANY_REQUESTS_IN_FLIGHT, str(over),
                                            {"reason": "too_many_in_flight"}))
            trace.finish("too_many_in_flight")
            return
        except InvalidRequest as exc:
            await self._record_refusal(Direction.CLIENT_TO_SERVER, message, method, target, exc.code, str(exc),
                                       exc.reason or "invalid_request")
            await self._emit(error_response(request_id, exc.code, str(exc)))
            trace.finish("invalid_request")
            return
        record.trace = trace
        try:
            await self._forward_client_request(message, record)
        except Exception:
            log.exception("session %s: internal error on request %s", self._session.info.id, method)
            self._release(record, Outcome.NEUTRAL)
            if self._session.close_client_request(request_id) is not None:
                self._disarm_timeout(request_id)
                await self._answer_locally(record, ErrorCode.INTERNAL_ERROR, "Internal error", INTERNAL_ERROR_REASON)
            trace.finish(INTERNAL_ERROR_REASON)

    async def _forward_client_request(self, message: Message, record: RequestRecord) -> None:
        ctx = MessageContext(self._session.info, Direction.CLIENT_TO_SERVER, message, record.method, record.target,
                             record, trace=record.trace)
        refusal = await self._admit(record, message)
        if refusal is not None:
            ctx.verdict = refusal
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            self._release(record, Outcome.NEUTRAL)
            self._session.close_client_request(record.id)
            await self._emit(error_response(record.id, verdict.code, verdict.error_message, verdict.data))
            record.trace.finish("rejected", ctx)
            await self._maybe_close(verdict)
            return
        if self._upstream_dead:
            # Raced with the upstream's death: answer here, never silently (and audited).
            self._release(record, Outcome.NEUTRAL)
            self._session.close_client_request(record.id)
            await self._answer_locally(record, ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream unavailable",
                                       "upstream_closed")
            return
        record.params = ctx.message.params
        self._arm_timeout(record)
        await self._send_request(_with_id(ctx.message, record.upstream_id), record.trace)

    async def _send_request(self, message: Message, trace: MessageTrace) -> None:
        """Forward a client request; its trace's ``upstream`` span starts now and travels with it."""
        message = trace.upstream_start(message)
        with trace.propagating():
            await self._to_upstream(message)

    async def _admit(self, record: RequestRecord, message: Message) -> Verdict | None:
        """Checks before any stage: drain, per-principal rate, input responses, circuit breaker.

        The breaker comes last, so that only a request every other check let through takes a
        ticket; the ticket is released whatever happens to the request next.
        """
        limits = self._limits
        if self.draining:
            return Verdict.reject(ErrorCode.SHUTTING_DOWN, "Server shutting down", {"reason": "shutting_down"},
                                  stage="limits")
        if limits.rate_limiter is not None and not await limits.rate_limiter.take(limits.principal_key):
            return Verdict.reject(ErrorCode.RATE_LIMITED, "Rate limit exceeded", {"reason": "rate_limited"},
                                  stage="limits")
        if not self._session.take_input_responses(record.method, record.target, message.params):
            return Verdict.reject(ErrorCode.INVALID_PARAMS,
                                  "Invalid params: inputResponses answer no input request of this session",
                                  {"reason": "unsolicited_input_responses"}, stage="limits")
        if limits.breaker is not None:
            ticket = limits.breaker.admit(limits.principal_key,
                                          probe_ok=record.method not in limits.exempt_from_timeout)
            if ticket is None:
                return Verdict.reject(ErrorCode.CIRCUIT_OPEN, "Upstream temporarily unavailable",
                                      {"reason": "circuit_open"}, stage="limits")
            record.ticket = ticket
        return None

    def _release(self, record: RequestRecord, outcome: Outcome) -> None:
        """Hand the request's breaker ticket back with what was learnt about the upstream."""
        if record.ticket is not None and self._limits.breaker is not None:
            self._limits.breaker.release(record.ticket, outcome)

    def _arm_timeout(self, record: RequestRecord) -> None:
        timeout = self._limits.call_timeout
        if timeout > 0 and record.method not in self._limits.exempt_from_timeout:
            self._deadlines.arm(record.id, timeout)

    def _disarm_timeout(self, request_id: RequestId) -> None:
        self._deadlines.disarm(request_id)

    def _timed_out(self, request_id: RequestId) -> None:
        """A request's deadline passed: answer it -31005, or end a cancelled one's reservation.

        While a server->client request is waiting for this client's answer (an elicitation
        nobody answers, say), the timeout is the client's doing, not the upstream's: it does
        not count against the circuit breaker.
        """
        record = self._session.expire_client_request(request_id)
        if record is None or record.cancelled:
            return
        self._release(record, Outcome.NEUTRAL if self._session.server_in_flight else Outcome.FAILURE)
        task = asyncio.create_task(self._answer_timeout(record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _answer_timeout(self, record: RequestRecord) -> None:
        """Tell the upstream to stop (MCP ``notifications/cancelled``) and answer the client."""
        await self._cancel_upstream(record, "guard: upstream call timed out")
        await self._answer_locally(record, ErrorCode.UPSTREAM_TIMEOUT, "Upstream timed out", "upstream_timeout")

    async def _cancel_upstream(self, record: RequestRecord, reason: str) -> None:
        if record.upstream_id is not None and not self._upstream_dead:
            await self._to_upstream(notification("notifications/cancelled",
                                                 {"requestId": record.upstream_id, "reason": reason}))

    async def _client_notification(self, message: Message) -> None:
        trace = self._tracer.start(self._session.info, message)
        try:
            await self._forward_notification(message, trace)
        finally:
            trace.finish(INTERNAL_ERROR_REASON)  # a no-op unless the notification's handling raised

    async def _forward_notification(self, message: Message, trace: MessageTrace) -> None:
        method = message.method or ""
        ctx = MessageContext(self._session.info, Direction.CLIENT_TO_SERVER, message, method,
                             mcp.target_of(method, message.params), trace=trace)
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            trace.finish("rejected", ctx)
            await self._maybe_close(verdict)
            return
        forwarded = ctx.message
        if method == "notifications/cancelled":
            cancelled = self._session.cancel_client_request(forwarded.params.get("requestId"))
            if cancelled is None:
                # Not a request of this session awaiting an answer: the upstream knows our
                # requests only by the ids guard gave them, so there is nothing to forward.
                trace.finish("dropped")
                return
            self._release(cancelled, Outcome.NEUTRAL)
            cancelled.trace.finish("cancelled")
            params = {**forwarded.params, "requestId": cancelled.upstream_id}
            forwarded = forwarded.replace_payload({**forwarded.payload, "params": params})
        await self._to_upstream(forwarded)
        trace.finish("forwarded")

    async def _client_response(self, message: Message) -> None:
        trace = self._tracer.start(self._session.info, message)
        try:
            await self._forward_client_response(message, trace)
        finally:
            trace.finish(INTERNAL_ERROR_REASON)  # a no-op unless the response's handling raised

    async def _forward_client_response(self, message: Message, trace: MessageTrace) -> None:
        request_id = message.id
        record = self._session.close_server_request(request_id) if request_id is not None else None
        if record is None:
            log.warning("session %s: dropped a client response that answers no pending server request",
                        self._session.info.id)
            await self._record_refusal(Direction.CLIENT_TO_SERVER, message, None, None, ErrorCode.INVALID_REQUEST,
                                       "Unmatched response", UNMATCHED_RESPONSE)
            trace.finish("dropped")
            return
        ctx = MessageContext(self._session.info, Direction.CLIENT_TO_SERVER, message, record.method, None, record,
                             trace=trace)
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            await self._to_upstream(error_response(record.id, verdict.code, verdict.error_message, verdict.data))
            trace.finish("rejected", ctx)
            await self._maybe_close(verdict)
            return
        await self._to_upstream(ctx.message)
        trace.finish("forwarded")

    async def _maybe_close(self, verdict: Verdict) -> None:
        """A stage asked to close the session: every other pending request gets the same error first."""
        close = verdict.close
        if close is not None:
            data = verdict.data if isinstance(verdict.data, dict) else {}
            await self._abort_pending(verdict.code, verdict.error_message, str(data.get("reason", "closed")))
            await self._close(close.code, close.reason)

    async def _abort_pending(self, code: int, text: str, reason: str, *, tell_upstream: bool = True) -> None:
        """Answer every request still awaiting an answer with an error guard generates (audited).

        The client is answered first; telling the upstream to stop comes after, best effort
        (a dead upstream must not cost the client its answers).
        """
        aborted = []
        for record in self._session.drain_client_requests():
            self._disarm_timeout(record.id)
            self._release(record, Outcome.NEUTRAL)
            if not record.cancelled:
                await self._answer_locally(record, code, text, reason)
                aborted.append(record)
        for record in aborted if tell_upstream else ():
            with contextlib.suppress(Exception):
                await self._cancel_upstream(record, f"guard: {reason}")

    # Upstream -> client -------------------------------------------------------------

    async def _read_upstream(self) -> None:
        while True:
            try:
                text = await self._upstream.receive()
            except UpstreamClosed as closed:
                await self._upstream_gone(str(closed))
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
        log.warning("session %s: upstream sent an invalid frame (%s)", self._session.info.id,
                    exc.reason or type(exc).__name__)
        if exc.request_id is None:
            return
        record = self._session.answer_from_upstream(exc.request_id)
        if record is None:
            return
        self._disarm_timeout(record.id)
        self._release(record, Outcome.NEUTRAL)
        if not record.cancelled:
            await self._answer_locally(record, ErrorCode.UPSTREAM_ERROR, "Upstream sent an invalid response",
                                       "invalid_upstream_response")

    async def _from_upstream(self, message: Message) -> None:
        if message.kind is Kind.REQUEST:
            await self._server_request(message)
        elif message.kind is Kind.NOTIFICATION:
            try:
                await self._server_notification(message)
            except Exception:  # nobody to answer: drop it, keep the session
                log.exception("session %s: internal error on an upstream notification; dropped",
                              self._session.info.id)
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
            await self._record_refusal(Direction.SERVER_TO_CLIENT, message, method, None, exc.code, str(exc),
                                       exc.reason or "invalid_request")
            await self._to_upstream(error_response(request_id, exc.code, str(exc)))
            return
        try:
            ctx = MessageContext(self._session.info, Direction.SERVER_TO_CLIENT, message, method, None, record)
            verdict = await self._pipeline.run(ctx)
            if verdict.rejected:
                self._session.close_server_request(request_id)
                await self._to_upstream(error_response(request_id, verdict.code, verdict.error_message,
                                                       verdict.data))
                return
            record.params = ctx.message.params
            await self._emit(ctx.message)
        except Exception:
            log.exception("session %s: internal error on an upstream %s request", self._session.info.id, method)
            if self._session.close_server_request(request_id) is not None:
                await self._to_upstream(error_response(request_id, ErrorCode.INTERNAL_ERROR, "Internal error",
                                                       {"reason": INTERNAL_ERROR_REASON}))

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
        record = self._session.answer_from_upstream(message.id)
        if record is None:
            log.warning("session %s: dropped an upstream response that answers no pending request",
                        self._session.info.id)
            await self._record_refusal(Direction.SERVER_TO_CLIENT, message, None, None, ErrorCode.INVALID_REQUEST,
                                       "Unmatched response", UNMATCHED_RESPONSE)
            return
        self._disarm_timeout(record.id)
        if record.cancelled:
            log.info("session %s: dropped the upstream's late answer to a cancelled request", self._session.info.id)
            await self._record_refusal(Direction.SERVER_TO_CLIENT, _with_id(message, record.id), record.method,
                                       record.target, ErrorCode.INVALID_REQUEST, "Request cancelled",
                                       REQUEST_CANCELLED, record)
            return
        record.trace.upstream_end(_outcome(message))
        self._release(record, Outcome.FAILURE if _transport_failure(message) else Outcome.SUCCESS)
        try:
            await self._deliver_response(_with_id(message, record.id), record)
        except Exception:
            log.exception("session %s: internal error on the answer to %s", self._session.info.id, record.method)
            await self._answer_locally(record, ErrorCode.INTERNAL_ERROR, "Internal error", INTERNAL_ERROR_REASON)

    async def _deliver_response(self, message: Message, record: RequestRecord) -> None:
        ctx = MessageContext(self._session.info, Direction.SERVER_TO_CLIENT, message, record.method,
                             record.target, record, trace=record.trace)
        ctx.upstream_outcome = _outcome(message)
        if record.method == mcp.INITIALIZE and isinstance(message.result, dict):
            version = message.result.get("protocolVersion")
            if isinstance(version, str):
                self._session.info.protocol_version = version
        verdict = await self._pipeline.run(ctx)
        if verdict.rejected:
            await self._emit(error_response(record.id, verdict.code, verdict.error_message, verdict.data))
            record.trace.finish("rejected", ctx)
            await self._maybe_close(verdict)
            return
        await self._emit(ctx.message)
        record.trace.finish(ctx.upstream_outcome or "ok", ctx)
        result = ctx.message.result
        if mcp.is_input_required(result):
            self._session.input_required_delivered(record.method, record.target, result)

    async def _answer_locally(self, record: RequestRecord, code: int, text: str, reason: str) -> None:
        """Answer a pending client request with an error guard generates (still audited)."""
        error = error_response(record.id, code, text, {"reason": reason})
        ctx = MessageContext(self._session.info, Direction.SERVER_TO_CLIENT, error, record.method, record.target,
                             record, trace=record.trace)
        ctx.upstream_outcome = reason
        record.trace.upstream_end(reason)
        with contextlib.suppress(Exception):
            await self._pipeline.run(ctx)
        await self._emit(error)
        record.trace.finish(reason, ctx)

    async def _upstream_interrupted(self) -> None:
        """The transport reconnected: what was in flight is lost, so answer it; the session goes on."""
        log.warning("session %s: upstream %s reconnected", self._session.info.id, self._session.info.server)
        if self._limits.breaker is not None:
            self._limits.breaker.failure(self._limits.principal_key)
        await self._abort_pending(ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream connection was reset",
                                  "upstream_reconnected", tell_upstream=False)
        self._session.drain_server_requests()

    async def _upstream_gone(self, reason: str) -> None:
        if self._upstream_dead:
            return
        self._upstream_dead = True
        if self._limits.breaker is not None and self._closing is None:
            self._limits.breaker.failure(self._limits.principal_key)
        log.warning("session %s: upstream %s gone: %s", self._session.info.id, self._session.info.server, reason)
        await self._abort_pending(ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream unavailable", "upstream_closed",
                                  tell_upstream=False)
        self._session.drain_server_requests()
        await self._close(CLOSE_INTERNAL_ERROR, f"upstream closed: {reason}")


def _with_id(message: Message, request_id: RequestId | None) -> Message:
    """The same message under another id (client id <-> the id guard used upstream)."""
    if request_id is None or message.payload.get("id") == request_id:
        return message
    return message.replace_payload({**message.payload, "id": request_id})


def _transport_failure(message: Message) -> bool:
    """An error the upstream *transport* produced (Streamable HTTP: unreachable, HTTP 5xx, bad reply).

    An HTTP 4xx other than 408 and 429 says the request was refused, not that the upstream is
    sick (and the client chose the request): it does not count against the breaker.
    """
    error = message.error
    if error is None or error.get("code") not in (ErrorCode.UPSTREAM_UNAVAILABLE, ErrorCode.UPSTREAM_ERROR):
        return False
    data = error.get("data")
    status = data.get("status") if isinstance(data, dict) else None
    return not (isinstance(status, int) and 400 <= status < 500 and status not in (408, 429))


def _outcome(message: Message) -> str:
    if message.kind is Kind.ERROR:
        error = message.error or {}
        return f"error:{error.get('code')}"
    result = message.result
    if isinstance(result, dict) and result.get("isError") is True:
        return "is_error"
    return "ok"

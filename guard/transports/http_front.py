"""The Streamable HTTP front door: ``POST`` / ``GET`` / ``DELETE`` on ``/mcp/<name>``.

The same path also takes the WebSocket upgrade (:mod:`guard.server`); both feed the same
relay and pipeline. Every HTTP request is authenticated like the WebSocket handshake
(:meth:`guard.runtime.Runtime.authenticate`: the same ``401`` with ``WWW-Authenticate``
and RFC 9728 ``resource_metadata``, the same ``Origin`` rule), then:

* ``POST`` with ``initialize`` (legacy era) starts a session and returns its
  ``Mcp-Session-Id``; a ``POST`` carrying that id goes to its relay; a request is answered
  with one JSON body, or with an SSE stream as soon as the server sends something before
  the answer (sampling, elicitation, roots, progress, log messages) or the answer takes
  longer than :data:`KEEPALIVE` seconds (then the stream carries keepalive comments); a
  notification or response is answered ``202``. MCP 2025-11-25 ``basic/transports``.
* ``POST`` of a 2026-07-28 request (no session; ``MCP-Protocol-Version`` and
  ``_meta``) is checked header against body (:mod:`guard.transports.mcp_http`) and
  served by a pooled upstream session (:mod:`guard.transports.http_sessions`); closing its
  response stream cancels it (``notifications/cancelled`` upstream). A JSON error answer
  takes the spec's status (``404`` for ``-32601``, ``400`` for malformed requests).
* ``GET`` with ``Mcp-Session-Id`` opens the session's stream for server-initiated
  messages; ``DELETE`` ends the session.
* ``GET`` without a session id opens a 2024-11-05 HTTP+SSE session: an ``endpoint`` event
  names the URL (this path plus ``?session_id=``) to ``POST`` messages to, answered ``202``;
  every message from the server, responses included, arrives on the stream.

Every refusal is an HTTP status with a JSON-RPC error body saying why (docs/clients.md,
"Streamable HTTP: defined outcomes").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from guard import mcp
from guard.context import Event, EventKind, Principal
from guard.errors import ProtocolError
from guard.jsonrpc import ErrorCode, Kind, Message, RequestId, error_response, notification, parse, serialize
from guard.tls import client_cert_subject
from guard.transports.exchange import Exchange, HttpClientConnection, Item, Mode, SessionClosed
from guard.transports.http import x_mcp_header_paths
from guard.transports.http_sessions import Opener, Pools, Sessions, owner_of
from guard.transports.mcp_http import (
    MCP_PROTOCOL_VERSION,
    MCP_SESSION_ID,
    Refusal,
    Route,
    accepts,
    check_legacy_version,
    check_modern_headers,
    error_status,
    route_post,
)

if TYPE_CHECKING:
    from guard.server import GuardApp

log = logging.getLogger("guard.transports.http")

KEEPALIVE = 15.0
"""Seconds of silence after which an answer switches to SSE / a stream sends a keepalive comment."""
MAX_TOOLS_REMEMBERED = 10_000
"""``x-mcp-header`` maps kept per upstream (from ``tools/list`` answers guard relayed)."""
_SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}

Callback = Callable[[str], Awaitable[None]]
Abandon = Callable[[], Awaitable[None]]


def json_error(refusal: Refusal, request_id: RequestId | None = None,
               headers: dict[str, str] | None = None) -> Response:
    """An HTTP status with a JSON-RPC error body (``id`` null unless the request's is known)."""
    body = serialize(error_response(request_id, refusal.code, refusal.message, refusal.data))
    return Response(body, refusal.status, media_type="application/json", headers=headers)


def sse_event(text: str, event: str = "message") -> bytes:
    """One Server-Sent Event (WHATWG HTML "event stream"): each line of ``text`` a ``data:`` line."""
    lines = "".join(f"data: {line}\n" for line in text.split("\n"))
    return f"event: {event}\n{lines}\n".encode()


class EventStream(Response):
    """``text/event-stream`` fed by an :class:`Exchange`, ended by its final item or the client leaving.

    A second task watches the request for ``http.disconnect`` (uvicorn reports a gone
    client only there), so a client that closes the stream is noticed at once: for a
    2026-07-28 request that is its cancellation.
    """

    media_type = "text/event-stream"

    def __init__(self, exchange: Exchange, first: Item | None, *, headers: dict[str, str] | None = None,
                 prelude: bytes = b"", on_final: Callback | None = None, on_abandon: Abandon | None = None) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({**_SSE_HEADERS, **(headers or {})})  # no body: no Content-Length
        self._exchange = exchange
        self._first = first
        self._prelude = prelude
        self._on_final = on_final
        self._on_abandon = on_abandon

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        finished = False

        async def pump() -> None:
            nonlocal finished
            if self._prelude:
                await send({"type": "http.response.body", "body": self._prelude, "more_body": True})
            item = self._first
            while True:
                if item is None:
                    await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
                elif item.text is None:
                    break
                else:
                    await send({"type": "http.response.body", "body": sse_event(item.text), "more_body": True})
                    if item.final:
                        finished = True
                        if self._on_final is not None:
                            await self._on_final(item.text)
                        break
                item = await self._exchange.next(KEEPALIVE)
            with contextlib.suppress(OSError, ClientDisconnect):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        writer = asyncio.create_task(pump())
        watcher = asyncio.create_task(_wait_disconnect(receive))
        try:
            await asyncio.wait({writer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, watcher):
                task.cancel()
            for task in (writer, watcher):
                with contextlib.suppress(asyncio.CancelledError, OSError, ClientDisconnect):
                    await task
            if not finished and self._on_abandon is not None:
                await self._on_abandon()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` past ``limit`` bytes (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class HttpFront:
    """Serves the HTTP methods of ``/mcp/<name>``; one per :class:`~guard.server.GuardApp`."""

    def __init__(self, app: GuardApp) -> None:
        self.app = app
        self._opener = opener = Opener(app)
        self.sessions = Sessions(opener)
        self.pools = Pools(opener)
        self._tool_headers: dict[str, dict[str, dict[tuple[str, ...], str]]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    async def wait_closed(self, timeout: float) -> None:
        """At shutdown: wait until every HTTP session's upstream is released (children reaped)."""
        await self._opener.wait_closed(timeout)

    async def endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        settings = self.app.runtime.settings
        if name not in settings.upstreams:
            return json_error(Refusal(404, ErrorCode.INVALID_REQUEST, f"no upstream named {name!r}",
                                      {"reason": "unknown_upstream"}))
        if request.method not in ("POST", "GET", "DELETE"):
            return json_error(Refusal(405, ErrorCode.INVALID_REQUEST, f"{request.method} is not supported here",
                                      {"reason": "method_not_allowed"}), headers={"Allow": "GET, POST, DELETE"})
        if self.app.draining:
            return json_error(Refusal(503, ErrorCode.SHUTTING_DOWN, "Server shutting down",
                                      {"reason": "shutting_down"}), headers={"Retry-After": "5"})
        authenticated = await self._authenticate(request, name)
        if isinstance(authenticated, Response):
            return authenticated
        principal, key = authenticated
        addr = _client_addr(request)
        try:
            if request.method == "POST":
                return await self._post(request, name, addr, principal, key)
            if request.method == "GET":
                return await self._get(request, name, addr, principal, key)
            return await self._delete(request, name, principal, key)
        except ClientDisconnect:
            return Response(status_code=400)

    # Authentication ------------------------------------------------------------------------

    async def _authenticate(self, request: Request, name: str) -> tuple[Principal, str] | Response:
        from guard.server import principal_key

        runtime = self.app.runtime
        query = request.scope.get("query_string", b"").decode("latin-1")
        # the headers as received (duplicates kept): a repeated Authorization or Origin is refused
        outcome = await runtime.authenticate(name, request.headers, query, base_url=str(request.base_url))
        if not isinstance(outcome, Principal):
            await runtime.pipeline.emit(Event(EventKind.AUTH_FAILURE, server=name, client_addr=_client_addr(request),
                                              code=outcome.status, reason=outcome.reason))
            refusal = Refusal(outcome.status, ErrorCode.UNAUTHENTICATED, outcome.description,
                              {"reason": outcome.reason})
            return json_error(refusal, headers=dict(outcome.headers))
        cert_subject = client_cert_subject(request.scope)
        if cert_subject is not None:
            outcome = dataclasses.replace(outcome, client_cert_subject=cert_subject)
        return outcome, principal_key(outcome, request)

    # POST ----------------------------------------------------------------------------------

    async def _post(self, request: Request, name: str, addr: str, principal: Principal, key: str) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return json_error(Refusal(415, ErrorCode.INVALID_REQUEST,
                                      "Content-Type must be application/json (one JSON-RPC message)",
                                      {"reason": "unsupported_media_type"}))
        json_ok, sse_ok = accepts(request.headers.get("accept"))
        if not (json_ok or sse_ok):
            return json_error(Refusal(406, ErrorCode.INVALID_REQUEST,
                                      "Accept must allow application/json and text/event-stream",
                                      {"reason": "not_acceptable"}))
        limit = self.app.runtime.settings.server.max_message_bytes
        body = await _read_body(request, limit)
        if body is None:
            await self._protocol_error(name, addr, 413, "message_too_big")
            return json_error(Refusal(413, ErrorCode.INVALID_REQUEST, f"message exceeds {limit} bytes",
                                      {"reason": "message_too_big"}))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            await self._protocol_error(name, addr, ErrorCode.PARSE_ERROR, "parse_error")
            return json_error(Refusal(400, ErrorCode.PARSE_ERROR, "Parse error: body is not UTF-8"))
        sse_session = request.query_params.get("session_id")
        if sse_session is not None:
            return await self._sse_post(name, principal, key, sse_session, text)
        try:
            message = parse(text)
        except ProtocolError as exc:
            batch = text.lstrip().startswith("[")
            reason = "batch_rejected" if batch else (
                "parse_error" if exc.code == ErrorCode.PARSE_ERROR else "invalid_request")
            await self._protocol_error(name, addr, exc.code, reason)
            return json_error(Refusal(400, exc.code, str(exc)), exc.request_id)
        session_id = request.headers.get(MCP_SESSION_ID)
        version = request.headers.get(MCP_PROTOCOL_VERSION)
        route = route_post(session_id, version, message)
        if route is Route.MODERN:
            return await self._modern(request, name, addr, principal, key, message, text, json_ok, sse_ok)
        if route is Route.NO_SESSION:
            await self._protocol_error(name, addr, ErrorCode.INVALID_REQUEST, "missing_session")
            return json_error(Refusal(400, ErrorCode.INVALID_REQUEST,
                                      "Bad Request: Mcp-Session-Id header is required (send initialize first)",
                                      {"reason": "missing_session"}), message.id)
        if route is Route.INITIALIZE:
            return await self._initialize(request, name, addr, principal, key, message, text, json_ok, sse_ok)
        session = self.sessions.find(session_id or "", name, owner_of(principal, key), Mode.SESSION)
        if session is None:
            await self._protocol_error(name, addr, ErrorCode.INVALID_REQUEST, "unknown_session")
            return _no_session(message.id)
        problem = check_legacy_version(version, session.info.protocol_version)
        if problem is not None:
            why = problem.data.get("reason") if isinstance(problem.data, dict) else None
            await self._protocol_error(name, addr, problem.code, why if isinstance(why, str) else "invalid_request")
            return json_error(problem, message.id)
        session.info.principal = principal
        return await self._relay(request, session.client, message, text, json_ok=json_ok, sse_ok=sse_ok)

    async def _initialize(self, request: Request, name: str, addr: str, principal: Principal, key: str,
                          message: Message, text: str, json_ok: bool, sse_ok: bool) -> Response:
        opened = await self.sessions.open(name, addr, principal, key, Mode.SESSION)
        if isinstance(opened, Refusal):
            await self._refused(name, addr, opened)
            return json_error(opened, message.id, _retry_after(opened))
        session = opened

        async def on_final(answer: str) -> None:
            if '"error"' in answer and _is_error(answer):
                self._spawn(session.end(1000, "initialize failed"))

        return await self._relay(request, session.client, message, text, json_ok=json_ok, sse_ok=sse_ok,
                                 headers={"Mcp-Session-Id": session.id}, on_final=on_final)

    async def _relay(self, request: Request, client: HttpClientConnection, message: Message, text: str, *,
                     json_ok: bool, sse_ok: bool, modern: bool = False, headers: dict[str, str] | None = None,
                     on_final: Callback | None = None, on_abandon: Abandon | None = None) -> Response:
        """Hand one POSTed message to a session and answer the HTTP request."""
        try:
            if message.kind is not Kind.REQUEST:
                await client.submit(text)
                return Response(status_code=202)
            exchange = client.open(message, streaming=sse_ok)
            if exchange is None:
                return json_error(Refusal(400, ErrorCode.INVALID_REQUEST,
                                          "Invalid Request: id is already in use by a pending request"), message.id)
            await client.submit(text)
        except SessionClosed:
            return _no_session(message.id)
        first = await self._first(request, exchange, sse_ok)
        if first is _GONE:
            client.forget(exchange)
            if on_abandon is not None:
                await on_abandon()
            return Response(status_code=204)
        if isinstance(first, Item) and first.final and first.text is not None and (json_ok or not sse_ok):
            if on_final is not None:
                await on_final(first.text)
            status = _status_of(first.text) if modern else 200
            return Response(first.text, status, media_type="application/json", headers=headers)
        return EventStream(exchange, first if isinstance(first, Item) else None, headers=headers,
                           on_final=on_final, on_abandon=_abandon(client, exchange, on_abandon))

    async def _first(self, request: Request, exchange: Exchange, sse_ok: bool) -> Item | object | None:
        """The first frame for this request, ``None`` after :data:`KEEPALIVE` s (SSE only), or ``_GONE``."""
        watcher = asyncio.create_task(_wait_disconnect(request.receive))
        try:
            while True:
                getter = asyncio.create_task(exchange.next(KEEPALIVE))
                await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    item = getter.result()
                    if item is not None or sse_ok:
                        return item
                    continue
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                return _GONE
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    # 2026-07-28 ------------------------------------------------------------------------------

    async def _modern(self, request: Request, name: str, addr: str, principal: Principal, key: str,
                      message: Message, text: str, json_ok: bool, sse_ok: bool) -> Response:
        if message.kind is Kind.NOTIFICATION:
            # 2026-07-28 defines no client notifications over HTTP (cancelling is closing the stream).
            log.debug("2026-07-28 notification %s acknowledged and dropped", message.method)
            return Response(status_code=202)
        if message.kind is not Kind.REQUEST:
            return json_error(Refusal(400, ErrorCode.INVALID_REQUEST,
                                      "Invalid Request: 2026-07-28 clients send requests and notifications only"),
                              message.id)
        tool = message.params.get("name") if message.method == mcp.TOOLS_CALL else None
        known = self._tool_headers.get(name, {}).get(tool) if isinstance(tool, str) else None
        problem = check_modern_headers(_raw_headers(request), message, known)
        if problem is not None:
            return json_error(problem, message.id)
        state = message.params.get("requestState")
        leased = await self.pools.lease(name, addr, principal, key, state if isinstance(state, str) else None)
        if isinstance(leased, Refusal):
            await self._refused(name, addr, leased)
            return json_error(leased, message.id, _retry_after(leased))
        session = leased
        settled = False

        async def on_final(answer: str) -> None:
            nonlocal settled
            settled = True
            if message.method == mcp.TOOLS_LIST:
                self._learn_tools(name, answer)
            if '"upstream_timeout"' in answer:
                self._spawn(self.pools.retire(session, "request timed out"))
                return
            self.pools.release(session, _minted_state(answer))

        async def on_abandon() -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            cancel = notification("notifications/cancelled",
                                  {"requestId": message.id, "reason": "client closed the response stream"})
            with contextlib.suppress(SessionClosed):
                await session.client.submit(serialize(cancel))
            self._spawn(self.pools.retire(session, "request cancelled by the client"))

        try:
            response = await self._relay(request, session.client, message, text, json_ok=json_ok, sse_ok=sse_ok,
                                         modern=True, on_final=on_final, on_abandon=on_abandon)
        except BaseException:
            if not settled:
                self.pools.release(session)
            raise
        if response.status_code == 404 and not settled:  # the session died under the lease
            self.pools.release(session)
        return response

    def _learn_tools(self, name: str, answer: str) -> None:
        """Remember each tool's ``x-mcp-header`` arguments, to check ``Mcp-Param-*`` headers against."""
        try:
            reply = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return
        result = reply.get("result") if isinstance(reply, dict) else None
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            return
        known = self._tool_headers.setdefault(name, {})
        for tool in tools:
            if isinstance(tool, dict) and isinstance(tool.get("name"), str) and len(known) < MAX_TOOLS_REMEMBERED:
                known[tool["name"]] = x_mcp_header_paths(tool.get("inputSchema"))

    # GET / DELETE --------------------------------------------------------------------------

    async def _get(self, request: Request, name: str, addr: str, principal: Principal, key: str) -> Response:
        _, sse_ok = accepts(request.headers.get("accept"))
        if not sse_ok:
            return json_error(Refusal(406, ErrorCode.INVALID_REQUEST, "Accept must allow text/event-stream",
                                      {"reason": "not_acceptable"}))
        session_id = request.headers.get(MCP_SESSION_ID)
        if session_id is None:
            return await self._sse_open(request, name, addr, principal, key)
        session = self.sessions.find(session_id, name, owner_of(principal, key), Mode.SESSION)
        if session is None:
            return _no_session(None)
        problem = check_legacy_version(request.headers.get(MCP_PROTOCOL_VERSION), session.info.protocol_version)
        if problem is not None:
            return json_error(problem)
        session.info.principal = principal
        exchange = Exchange(None, streaming=True, capacity=session.client.capacity)
        try:
            await session.client.attach(exchange)
        except SessionClosed:
            return _no_session(None)

        async def detach() -> None:
            session.client.detach(exchange)

        return EventStream(exchange, None, on_abandon=detach)

    async def _delete(self, request: Request, name: str, principal: Principal, key: str) -> Response:
        session_id = request.headers.get(MCP_SESSION_ID)
        if session_id is None:
            return json_error(Refusal(400, ErrorCode.INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required",
                                      {"reason": "missing_session"}))
        session = self.sessions.find(session_id, name, owner_of(principal, key), Mode.SESSION)
        if session is None:
            return _no_session(None)
        await session.end(1000, "session deleted by the client")
        return Response(status_code=204)

    # HTTP+SSE (2024-11-05) ------------------------------------------------------------------

    async def _sse_open(self, request: Request, name: str, addr: str, principal: Principal, key: str) -> Response:
        opened = await self.sessions.open(name, addr, principal, key, Mode.STREAM)
        if isinstance(opened, Refusal):
            await self._refused(name, addr, opened)
            return json_error(opened, None, _retry_after(opened))
        session = opened
        exchange = Exchange(None, streaming=True, capacity=session.client.capacity)
        await session.client.attach(exchange)
        endpoint = f"{request.url.path}?session_id={session.id}"

        async def ended() -> None:
            self._spawn(session.end(1000, "SSE stream closed by the client"))

        return EventStream(exchange, None, prelude=sse_event(endpoint, "endpoint"), on_abandon=ended)

    async def _sse_post(self, name: str, principal: Principal, key: str, session_id: str, text: str) -> Response:
        session = self.sessions.find(session_id, name, owner_of(principal, key), Mode.STREAM)
        if session is None:
            return _no_session(None)
        session.info.principal = principal
        try:
            await session.client.submit(text)  # the relay answers bad input on the stream, as over WebSocket
        except SessionClosed:
            return _no_session(None)
        return Response("Accepted", status_code=202, media_type="text/plain")

    # Helpers -------------------------------------------------------------------------------

    async def _protocol_error(self, name: str, addr: str, code: int, reason: str) -> None:
        """A body refused before it became a message still leaves an audit trail, as over WebSocket."""
        await self.app.runtime.pipeline.emit(Event(EventKind.PROTOCOL_ERROR, server=name, client_addr=addr,
                                                   code=int(code), reason=reason))

    async def _refused(self, name: str, addr: str, refusal: Refusal) -> None:
        """A session guard would not open (connection caps, drain, open breaker, upstream down)
        is a message that never reached its destination: it leaves a ``deny`` record too."""
        data = refusal.data if isinstance(refusal.data, dict) else {}
        reason = data.get("reason")
        await self._protocol_error(name, addr, refusal.status, reason if isinstance(reason, str) else "refused")

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


_GONE = object()
"""The HTTP client disconnected before its first frame."""


def _abandon(client: HttpClientConnection, exchange: Exchange, then: Abandon | None) -> Abandon:
    async def abandon() -> None:
        client.forget(exchange)
        if then is not None:
            await then()
    return abandon


def _no_session(request_id: RequestId | None) -> Response:
    """404: unknown, expired, ended or someone else's session; the client must initialize again."""
    return json_error(Refusal(404, ErrorCode.INVALID_REQUEST,
                              "Session not found: it expired or was ended; send initialize again",
                              {"reason": "unknown_session"}), request_id)


def _retry_after(refusal: Refusal) -> dict[str, str] | None:
    return {"Retry-After": "5"} if refusal.status in (429, 503) else None


def _raw_headers(request: Request) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]


def _client_addr(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client is not None else "unknown"


def _is_error(answer: str) -> bool:
    try:
        reply = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return True
    return isinstance(reply, dict) and "error" in reply


def _status_of(answer: str) -> int:
    """The 2026-07-28 HTTP status for a JSON answer (``200`` unless it is an error the spec maps)."""
    if '"error"' not in answer:
        return 200
    try:
        reply = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return 200
    error = reply.get("error") if isinstance(reply, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return error_status(code) if isinstance(code, int) else 200


def _minted_state(answer: str) -> str | None:
    """The ``requestState`` of an ``InputRequiredResult``, so its retry returns to the same session."""
    if '"requestState"' not in answer:
        return None
    try:
        reply = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None
    result = reply.get("result") if isinstance(reply, dict) else None
    if not isinstance(result, dict) or not mcp.is_input_required(result):
        return None
    state = result.get("requestState")
    return state if isinstance(state, str) else None

"""The ASGI application and the uvicorn lifecycle.

Endpoints:

* ``/mcp/{name}`` — WebSocket, subprotocol ``mcp``, one JSON-RPC message per text
  frame, one endpoint per configured upstream. Refusals happen *before* the upgrade
  with an HTTP status and a plain-text reason (ASGI WebSocket Denial Response):
  unknown upstream 404, subprotocol ``mcp`` not offered 400, authentication 401/403.
* ``/healthz`` — liveness; ``/readyz`` — readiness of this replica (its own dependencies:
  policy, audit, PII analyzers, Redis with ``[cluster]``); ``/readyz?upstream=NAME`` —
  one upstream's health, a separate signal so that one dead upstream does not take every
  replica out of a load balancer's pool (docs/operators.md, "Fleet: readiness").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from guard.config import UpstreamSettings
from guard.context import Event, EventKind, Principal, SessionInfo
from guard.errors import UpstreamUnavailable
from guard.limits import refusal_status
from guard.pipeline.authenticate import expiry_deadline
from guard.relay import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    EXPIRED_ERROR,
    ClientConnection,
    Relay,
    RelayLimits,
    close_reason,
)
from guard.runtime import Runtime
from guard.session import Session
from guard.tls import TLSWebSocketProtocol, client_cert_subject, server_ssl_context
from guard.transports import refusals
from guard.transports.base import Upstream, create_upstream, probe_tcp
from guard.transports.downstream import StarletteClient
from guard.transports.handshake import header_limits, protocol_with_deadline
from guard.transports.http_front import HttpFront

log = logging.getLogger("guard.server")

SUBPROTOCOL = "mcp"
HTTP_METHODS = ["GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]
"""Methods routed to the HTTP front door (it answers the unsupported ones with 405 and a reason)."""
CLOSE_INVALID_DATA = 1007
"""RFC 6455 section 7.4.1: a text frame that is not UTF-8; the WebSocket layer closes with it."""
EXPIRY_CLOSE_GRACE = 2.0
"""Seconds after token expiry (plus leeway) at which a silent session is closed with 1008."""


async def _deny(websocket: WebSocket, status: int, code: str, text: str, headers: dict[str, str] | None = None,
                *, logged: bool = False) -> None:
    """Refuse a handshake before the upgrade with an HTTP status and a plain-text reason.

    Logged once, at info, with the reason ``code`` (``logged=True`` when the authenticator
    already did); the HTTP and WebSocket libraries' own lines for it are dropped
    (:mod:`guard.transports.refusals`).
    """
    if not logged:
        log.info("refused handshake on %s: %s (%d)", _shown(websocket.path_params.get("name", "")), code, status)
    response = PlainTextResponse(text + "\n", status_code=status, headers=headers)
    with refusals.refusing():
        try:
            await websocket.send_denial_response(response)
        except RuntimeError:  # server without the denial extension: close before accept (HTTP 403)
            await websocket.close(1008, close_reason(text))


def _shown(name: str) -> str:
    """An upstream name from the request path, fit for a log line (it may be anything)."""
    return repr(name[:64]) if len(name) > 64 or not name.isprintable() else name


def _client_addr(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client is not None else "unknown"


class GuardApp:
    """Holds the runtime and serves the MCP WebSocket endpoints."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.active: set[Relay] = set()
        self.draining = False
        self._expiries: set[asyncio.Task[None]] = set()
        self.http = HttpFront(self)
        """The Streamable HTTP (and HTTP+SSE) side of ``/mcp/{name}``."""

    async def drain(self, deadline: float) -> None:
        """Graceful shutdown: refuse new work, let in-flight requests finish, then end every session.

        Requests still pending after ``deadline`` are answered -31012 (``shutting_down``) through
        the pipeline, so the audit log records each outcome, and the upstream is told to stop
        them; then each session closes 1001. A client too slow to take its answers gets 5 s.
        """
        self.draining = True
        for relay in list(self.active):
            relay.draining = True
        end = time.monotonic() + deadline
        while time.monotonic() < end and any(relay.in_flight for relay in self.active):
            await asyncio.sleep(0.05)
        left = list(self.active)
        endings = [asyncio.create_task(relay.shutdown(CLOSE_GOING_AWAY, "server shutting down")) for relay in left]
        if endings:
            _, late = await asyncio.wait(endings, timeout=5.0)
            for task in late:
                task.cancel()
        end = time.monotonic() + 5.0
        while self.active and time.monotonic() < end:
            await asyncio.sleep(0.05)
        await self.http.wait_closed(max(0.0, end - time.monotonic()))
        log.info("drained: %d session(s) closed", len(left))

    async def mcp_endpoint(self, websocket: WebSocket) -> None:
        """One WebSocket connection: refused before the upgrade, or served until it ends.

        Every path answers the handshake. Should one ever return without doing so (a bug), the
        client gets a 500 here rather than uvicorn's "returned without completing handshake".
        """
        try:
            await self._connect(websocket)
        finally:
            if websocket.application_state is WebSocketState.CONNECTING:
                log.error("handshake on %s left unanswered; refused", _shown(websocket.path_params.get("name", "")))
                await _deny(websocket, 500, "internal_error", "internal error", logged=True)

    async def _connect(self, websocket: WebSocket) -> None:
        runtime = self.runtime
        settings = runtime.settings
        name = websocket.path_params["name"]
        addr = _client_addr(websocket)
        upstream_settings = settings.upstreams.get(name)
        if upstream_settings is None:  # the name is the client's text: not recorded
            await self._handshake_refused(None, addr, 404, "unknown_upstream")
            await _deny(websocket, 404, "unknown_upstream", f"no upstream named {name[:64]!r}")
            return
        if self.draining:
            await self._handshake_refused(name, addr, 503, "shutting_down")
            await _deny(websocket, 503, "shutting_down", "server shutting down", {"Retry-After": "5"})
            return
        offered = websocket.scope.get("subprotocols") or []
        if SUBPROTOCOL not in offered:
            await self._handshake_refused(name, addr, 400, "subprotocol_required")
            await _deny(websocket, 400, "subprotocol_required",
                        "the WebSocket subprotocol 'mcp' is required (Sec-WebSocket-Protocol: mcp)")
            return
        query = websocket.scope.get("query_string", b"").decode("latin-1")
        # the headers as received (duplicates kept): a repeated Authorization or Origin is refused
        outcome = await runtime.authenticate(name, websocket.headers, query, base_url=str(websocket.base_url))
        if not isinstance(outcome, Principal):
            await runtime.pipeline.emit(Event(EventKind.AUTH_FAILURE, server=name, client_addr=addr,
                                              code=outcome.status, reason=outcome.reason))
            await _deny(websocket, outcome.status, outcome.reason, outcome.description,
                        dict(outcome.headers), logged=True)  # the authenticator logged it
            return
        cert_subject = client_cert_subject(websocket.scope)  # verified in the TLS handshake (mTLS)
        if cert_subject is not None:
            outcome = dataclasses.replace(outcome, client_cert_subject=cert_subject)
        key = principal_key(outcome, websocket)
        refused = await runtime.connections.enter(key)
        if refused is not None:
            status = refusal_status(refused)
            await runtime.pipeline.emit(Event(EventKind.AUTH_FAILURE, server=name, client_addr=addr,
                                              code=status, reason=refused))
            await _deny(websocket, status, refused, refused.replace("_", " "), {"Retry-After": "5"})
            return
        try:
            await self._serve_session(websocket, name, addr, outcome, key)
        finally:
            runtime.connections.release(key)

    async def _serve_session(self, websocket: WebSocket, name: str, addr: str, principal: Principal,
                             key: str) -> None:
        settings = self.runtime.settings
        breaker = self.runtime.breakers.get(name)
        if breaker is not None and not breaker.accepts_connections():  # never takes the half-open probe
            await self._handshake_refused(name, _client_addr(websocket), 503, "circuit_open")
            await _deny(websocket, 503, "circuit_open", "upstream temporarily unavailable (circuit open)",
                        {"Retry-After": "5"})
            return
        info = SessionInfo(id=secrets.token_urlsafe(16), server=name, client_addr=addr, principal=principal)
        upstream = create_upstream(settings.upstreams[name], info.id, settings.server.max_message_bytes)
        await websocket.accept(subprotocol=SUBPROTOCOL)
        try:
            await self.start_upstream(info, upstream, key)
        except UpstreamUnavailable as exc:
            await websocket.close(CLOSE_TRY_AGAIN_LATER, close_reason(f"upstream unavailable: {exc}"))
            return
        client = StarletteClient(websocket)
        relay = self.new_relay(info, upstream, client, key)
        await self.run_relay(relay, info, upstream, websocket=client)

    async def _handshake_refused(self, name: str | None, addr: str, status: int, reason: str) -> None:
        """A handshake refused before the session existed still leaves a ``deny`` record (issue 15)."""
        await self.runtime.pipeline.emit(Event(EventKind.PROTOCOL_ERROR, server=name, client_addr=addr,
                                               code=status, reason=reason))

    async def start_upstream(self, info: SessionInfo, upstream: Upstream, key: str) -> None:
        """Start a session's upstream and announce the session (``connect`` event).

        On failure the breaker counts it (against ``key``), the session is recorded as closed
        (``upstream_unavailable``), the upstream released, and
        :class:`~guard.errors.UpstreamUnavailable` re-raised for the transport to answer.
        """
        breaker = self.runtime.breakers.get(info.server)
        try:
            await upstream.start()
        except UpstreamUnavailable as exc:
            if breaker is not None:
                breaker.failure(key)
            log.warning("session %s: upstream %s unavailable: %s", info.id, info.server, exc)
            await self.runtime.pipeline.emit(Event(EventKind.CLOSE, server=info.server, session=info,
                                                   client_addr=info.client_addr, code=CLOSE_TRY_AGAIN_LATER,
                                                   reason="upstream_unavailable"))
            await upstream.aclose()
            raise
        await self.runtime.pipeline.emit(Event(EventKind.CONNECT, server=info.server, session=info,
                                               client_addr=info.client_addr))

    def new_relay(self, info: SessionInfo, upstream: Upstream, client: ClientConnection, key: str, *,
                  idle_timeout: float | None = None) -> Relay:
        """A relay for one session with the configured limits; every downstream transport builds it here.

        ``idle_timeout`` overrides ``server.idle_timeout`` (HTTP sessions, whose client can
        leave without a trace, always expire).
        """
        settings = self.runtime.settings
        server = settings.server
        relay = Relay(
            session=Session(info, server.max_in_flight),
            pipeline=self.runtime.pipeline,
            client=client,
            upstream=upstream,
            limits=RelayLimits(
                max_message_bytes=server.max_message_bytes,
                outbound_queue=server.outbound_queue,
                call_timeout=settings.upstreams[info.server].call_timeout,
                idle_timeout=server.idle_timeout if idle_timeout is None else idle_timeout,
                rate_limiter=self.runtime.rate_limiter,
                breaker=self.runtime.breakers.get(info.server),
                principal_key=key,
            ),
            tracer=self.runtime.tracer,
        )
        relay.draining = self.draining
        return relay

    async def run_relay(self, relay: Relay, info: SessionInfo, upstream: Upstream, *,
                        close_at_expiry: bool = True, websocket: StarletteClient | None = None) -> tuple[int, str]:
        """Run a session to its end: drain registration, token-expiry close, upstream release, ``close`` event.

        ``close_at_expiry`` schedules the proactive close of a silent session when the
        handshake token expires (WebSocket); HTTP sessions re-authenticate every request.
        """
        self.active.add(relay)
        expiry = self._schedule_expiry(relay, info.principal) if close_at_expiry else None
        code, reason = 1000, "closed"
        try:
            code, reason = await relay.run()
            if websocket is not None and websocket.disconnect_code == CLOSE_INVALID_DATA:
                code, reason = CLOSE_INVALID_DATA, "invalid_utf8"  # refused by the WebSocket layer, logged there
        finally:
            if expiry is not None:
                expiry.cancel()
            self.active.discard(relay)
            await upstream.aclose()
            await self.runtime.pipeline.emit(Event(EventKind.CLOSE, server=info.server, session=info,
                                                   client_addr=info.client_addr, code=code, reason=reason))
        return code, reason

    def _schedule_expiry(self, relay: Relay, principal: Principal) -> asyncio.TimerHandle | None:
        """Close an idle session (1008) shortly after its token expires.

        Messages are checked at the deadline itself by the authenticate stage (error -31003,
        then 1008); this timer, ``EXPIRY_CLOSE_GRACE`` later, ends sessions that stay silent.
        """
        deadline = expiry_deadline(principal, self.runtime.settings.auth.leeway)
        if deadline is None:
            return None
        loop = asyncio.get_running_loop()

        def expire() -> None:
            task = loop.create_task(relay.shutdown(CLOSE_POLICY_VIOLATION, "token expired", EXPIRED_ERROR))
            self._expiries.add(task)
            task.add_done_callback(self._expiries.discard)

        return loop.call_later(max(0.0, deadline + EXPIRY_CLOSE_GRACE - time.time()), expire)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Readiness of this replica: its own checks (policy, audit, PII, Redis), not the upstreams'.

        ``?upstream=NAME`` answers for one upstream instead: reachable and breaker not open
        (200), else 503; an unknown name is 404. Each answer also sets
        ``guard_upstream_reachable{server}``.
        """
        upstream = request.query_params.get("upstream")
        if upstream is not None:
            return await self._upstream_ready(upstream)
        checks: dict[str, dict[str, Any]] = {}
        for check in self.runtime.readiness:
            name, ok, detail = check()
            checks[name] = {"ok": ok, "detail": detail}
        ready = all(c["ok"] for c in checks.values()) and not self.draining
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    async def _upstream_ready(self, name: str) -> Response:
        settings = self.runtime.settings.upstreams.get(name)
        if settings is None:
            return JSONResponse({"status": "unknown upstream"}, status_code=404)
        reachable, detail = await upstream_reachable(settings)
        self.runtime.metrics.upstream_reachable(name, reachable)
        breaker = self.runtime.breakers.get(name)
        closed = breaker is None or breaker.accepts_connections()
        state = breaker.state.value if breaker is not None and breaker.enabled else "disabled"
        ready = reachable and closed
        return JSONResponse({"status": "ready" if ready else "not ready", "upstream": name,
                             "checks": {"reachable": {"ok": reachable, "detail": detail},
                                        "breaker": {"ok": closed, "detail": state}}},
                            status_code=200 if ready else 503)


async def upstream_reachable(settings: UpstreamSettings) -> tuple[bool, str]:
    """stdio: the command resolves to an executable; network upstreams: a TCP connection opens."""
    if settings.transport == "stdio":
        command = settings.command or ""
        found = shutil.which(command) if os.sep not in command else (command if os.access(command, os.X_OK) else None)
        return (found is not None, "command found" if found else f"command not found: {command}")
    try:
        await probe_tcp(settings.url or "", 2.0)
    except (OSError, TimeoutError) as exc:
        return False, f"cannot connect: {type(exc).__name__}"
    return True, "reachable"


def principal_key(principal: Principal, connection: HTTPConnection) -> str:
    """What rate limits and connection caps count by: the subject, or the client host if anonymous."""
    if principal.anonymous:
        host = connection.client.host if connection.client is not None else "unknown"
        return f"anonymous@{host}"
    return f"{principal.issuer or ''}|{principal.subject}"


def build_app(runtime: Runtime) -> Starlette:
    """The starlette application for a runtime."""
    guard_app = GuardApp(runtime)
    routes: list[BaseRoute] = [
        WebSocketRoute("/mcp/{name}", guard_app.mcp_endpoint),
        Route("/mcp/{name}", guard_app.http.endpoint, methods=HTTP_METHODS),
        Route("/healthz", guard_app.healthz),
        Route("/readyz", guard_app.readyz),
        *runtime.routes,
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.guard = guard_app
    return app


def uvicorn_config(app: Any, runtime: Runtime, **overrides: Any) -> uvicorn.Config:
    """uvicorn settings derived from guard's: size limit enforced after decompression, no deflate by default."""
    s = runtime.settings.server
    refusals.install()  # refusals: one info line each, never an ERROR a client can trigger
    options: dict[str, Any] = {
        "host": s.host,
        "port": s.port,
        "ws": TLSWebSocketProtocol,  # websockets-sansio + the ASGI TLS extension (client certificate)
        "ws_max_size": s.max_message_bytes,
        "ws_per_message_deflate": s.per_message_deflate,
        # A token up to auth.max_token_bytes always fits the request head; larger heads get 431.
        "http": protocol_with_deadline(s.handshake_timeout, header_limits(runtime.settings.auth.max_token_bytes)),
        "ws_ping_interval": s.ping_interval or None,
        "ws_ping_timeout": s.ping_timeout,
        "log_config": None,
        "lifespan": "on",
        "server_header": False,
    }
    tls = runtime.settings.tls
    if tls.enabled:
        options["ssl_context_factory"] = lambda _config, _default: server_ssl_context(tls)
    options.update(overrides)
    return uvicorn.Config(app, **options)


class GuardServer(uvicorn.Server):
    """uvicorn's server with guard's graceful drain on SIGTERM/SIGINT.

    Order: stop accepting, let in-flight requests finish (up to ``drain_timeout``), answer
    what is still pending with -31012 and close the remaining sessions with 1001, then
    uvicorn's own shutdown and the lifespan shutdown, which flushes audit. The process then
    exits 0.
    """

    def __init__(self, config: uvicorn.Config, guard_app: GuardApp,
                 on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.guard_app = guard_app
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup (lifespan: analyzers, audit, policy; then listen), then ``on_ready``.

        A banner printed here is true: guard accepts connections when it appears.
        """
        await super().startup(sockets)
        if self.started and not self.should_exit and self.on_ready is not None:
            self.on_ready()

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            # uvicorn re-raises captured signals after shutdown (exit status -15); a completed
            # drain on SIGTERM is a clean exit, status 0, as process supervisors expect.
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await self.guard_app.drain(self.guard_app.runtime.settings.server.drain_timeout)
        await super().shutdown(sockets)


def serve(runtime: Runtime, sockets: list[socket.socket] | None = None,
          on_ready: Callable[[], None] | None = None) -> None:
    """Run guard in the foreground until SIGINT/SIGTERM (graceful drain, exit 0).

    ``on_ready`` runs once guard is listening and every stage has started.
    """
    app = build_app(runtime)
    server = GuardServer(uvicorn_config(app, runtime), app.state.guard, on_ready)
    server.run(sockets=sockets)


def listening_socket(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` before anything starts, so "address in use" is one clear error.

    Raises ``OSError`` (``errno.EADDRINUSE`` when the port is taken).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    # Not inheritable: uvicorn's event loop (uvloop) spawns stdio upstreams without closing
    # inheritable descriptors, and an upstream holding guard's listening socket could accept
    # guard's clients itself (and keeps the port open after guard dies).
    sock.set_inheritable(False)
    return sock


def endpoints(settings: Any, port: int) -> list[str]:
    """The URL of each upstream's endpoint (HTTP scheme; the same path takes WebSocket upgrades)."""
    host = settings.server.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
    scheme = "https" if settings.tls.enabled else "http"
    return [f"{scheme}://{shown}:{port}/mcp/{name}" for name in settings.upstreams]

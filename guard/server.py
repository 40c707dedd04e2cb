"""The ASGI application and the uvicorn lifecycle.

Endpoints:

* ``/mcp/{name}`` — WebSocket, subprotocol ``mcp``, one JSON-RPC message per text
  frame, one endpoint per configured upstream. Refusals happen *before* the upgrade
  with an HTTP status and a plain-text reason (ASGI WebSocket Denial Response):
  unknown upstream 404, subprotocol ``mcp`` not offered 400, authentication 401/403.
* ``/healthz`` — liveness; ``/readyz`` — readiness.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from guard.context import Event, EventKind, Principal, SessionInfo
from guard.errors import UpstreamUnavailable
from guard.relay import CLOSE_TRY_AGAIN_LATER, Relay, close_reason
from guard.runtime import Runtime
from guard.session import Session
from guard.transports.base import create_upstream
from guard.transports.downstream import StarletteClient

log = logging.getLogger("guard.server")

SUBPROTOCOL = "mcp"


async def _deny(websocket: WebSocket, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
    """Refuse a handshake before the upgrade with an HTTP status and a plain-text reason."""
    response = PlainTextResponse(reason + "\n", status_code=status, headers=headers)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # server without the denial extension: close before accept (HTTP 403)
        await websocket.close(1008, close_reason(reason))


def _client_addr(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client is not None else "unknown"


class GuardApp:
    """Holds the runtime and serves the MCP WebSocket endpoints."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.active: set[Relay] = set()

    async def mcp_endpoint(self, websocket: WebSocket) -> None:
        runtime = self.runtime
        settings = runtime.settings
        name = websocket.path_params["name"]
        addr = _client_addr(websocket)
        upstream_settings = settings.upstreams.get(name)
        if upstream_settings is None:
            await _deny(websocket, 404, f"no upstream named {name!r}")
            return
        offered = websocket.scope.get("subprotocols") or []
        if SUBPROTOCOL not in offered:
            await _deny(websocket, 400, "the WebSocket subprotocol 'mcp' is required (Sec-WebSocket-Protocol: mcp)")
            return
        headers = {k.lower(): v for k, v in websocket.headers.items()}
        query = websocket.scope.get("query_string", b"").decode("latin-1")
        outcome = await runtime.authenticate(name, headers, query)
        if not isinstance(outcome, Principal):
            await runtime.pipeline.emit(Event(EventKind.AUTH_FAILURE, server=name, client_addr=addr,
                                              code=outcome.status, reason=outcome.reason))
            await _deny(websocket, outcome.status, _failure_text(outcome.status), dict(outcome.headers))
            return
        info = SessionInfo(id=secrets.token_urlsafe(16), server=name, client_addr=addr, principal=outcome)
        upstream = create_upstream(upstream_settings, info.id, settings.server.max_message_bytes)
        await websocket.accept(subprotocol=SUBPROTOCOL)
        try:
            await upstream.start()
        except UpstreamUnavailable as exc:
            log.warning("session %s: upstream %s unavailable: %s", info.id, name, exc)
            await websocket.close(CLOSE_TRY_AGAIN_LATER, close_reason(f"upstream unavailable: {exc}"))
            await runtime.pipeline.emit(Event(EventKind.CLOSE, server=name, session=info, client_addr=addr,
                                              code=CLOSE_TRY_AGAIN_LATER, reason="upstream_unavailable"))
            await upstream.aclose()
            return
        await runtime.pipeline.emit(Event(EventKind.CONNECT, server=name, session=info, client_addr=addr))
        relay = Relay(
            session=Session(info, settings.server.max_in_flight),
            pipeline=runtime.pipeline,
            client=StarletteClient(websocket),
            upstream=upstream,
            max_message_bytes=settings.server.max_message_bytes,
        )
        self.active.add(relay)
        code, reason = 1000, "closed"
        try:
            code, reason = await relay.run()
        finally:
            self.active.discard(relay)
            await upstream.aclose()
            await runtime.pipeline.emit(Event(EventKind.CLOSE, server=name, session=info, client_addr=addr,
                                              code=code, reason=reason))

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        return JSONResponse({"status": "ready", "upstreams": sorted(self.runtime.settings.upstreams)})


def _failure_text(status: int) -> str:
    return {401: "authentication required", 403: "forbidden"}.get(status, "refused")


def build_app(runtime: Runtime) -> Starlette:
    """The starlette application for a runtime."""
    guard_app = GuardApp(runtime)
    routes: list[BaseRoute] = [
        WebSocketRoute("/mcp/{name}", guard_app.mcp_endpoint),
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
    options: dict[str, Any] = {
        "host": s.host,
        "port": s.port,
        "ws": "websockets-sansio",
        "ws_max_size": s.max_message_bytes,
        "ws_per_message_deflate": s.per_message_deflate,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        "log_config": None,
        "lifespan": "on",
        "server_header": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(runtime: Runtime, sockets: list[socket.socket] | None = None) -> None:
    """Run guard in the foreground until SIGINT/SIGTERM."""
    app = build_app(runtime)
    server = uvicorn.Server(uvicorn_config(app, runtime))
    server.run(sockets=sockets)

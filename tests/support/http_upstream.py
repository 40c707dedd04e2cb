"""A Streamable HTTP upstream for tests: echoes each request, records every body it received.

Every request is answered ``{"method": ..., "params": ...}`` in one JSON body, decoded and
encoded with the stdlib (exact integers), except ``test/raw_result``, answered with
``params.text`` written verbatim as the result, ``test/sse``, answered over an SSE stream, and
``test/status``, answered with HTTP status ``params.status`` and no body.
Notifications and responses get 202. ``received`` holds the raw bodies, ``headers`` each POST's
request headers (lower-cased names).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.guard_server import free_socket, serving


class EchoHttpUpstream:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.headers: list[dict[str, str]] = []

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            if request.method != "POST":
                return Response(status_code=405)
            body = await request.body()
            self.received.append(body)
            self.headers.append(dict(request.headers))
            msg: Any = json.loads(body)
            if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
                return Response(status_code=202)
            if msg["method"] == "test/status":
                return Response(status_code=int(msg["params"]["status"]))
            rid = json.dumps(msg["id"])
            if msg["method"] == "test/raw_result":
                text = '{"jsonrpc":"2.0","id":' + rid + ',"result":' + msg["params"]["text"] + '}'
                return Response(text, media_type="application/json")
            reply = json.dumps({"jsonrpc": "2.0", "id": msg["id"],
                                "result": {"method": msg["method"], "params": msg.get("params")}})
            if msg["method"] == "test/sse":
                return Response(f"event: message\ndata: {reply}\n\n", media_type="text/event-stream")
            return Response(reply, media_type="application/json")

        return Starlette(routes=[Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"])])


@contextlib.asynccontextmanager
async def http_upstream() -> AsyncIterator[tuple[str, EchoHttpUpstream]]:
    """Serve an :class:`EchoHttpUpstream` on a free loopback port; yields its URL and the recorder."""
    upstream = EchoHttpUpstream()
    server = uvicorn.Server(uvicorn.Config(upstream.app(), log_config=None, lifespan="off"))
    async with serving(server, free_socket()) as port:
        yield f"http://127.0.0.1:{port}/mcp", upstream

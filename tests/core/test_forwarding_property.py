"""Property, end to end: every JSON value guard accepts reaches every upstream transport unchanged.

One real guard serves three upstreams: the scripted stdio server, the WebSocket upstream and
a Streamable HTTP upstream, each echoing what it received. Hypothesis draws hostile
``tools/call`` arguments (lone surrogates, ``1e400``, 80-bit integers, raw UTF-8, paired
escapes) and sends each frame to all three over raw WebSocket frames. A value guard accepts
comes back type-for-type identical from every transport; a value it refuses is -32700 on
its id, and the connection keeps working (issue 12, items 7 and 9).

guard and the upstreams run in a background event loop (a module fixture), the examples in
hypothesis' own synchronous loop with websockets' sync client, so each example costs three
round trips, not three process starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from tests.core.test_relay_bad_input import SCRIPT
from tests.support.guard_server import free_port, running_guard, ws_upstream_process
from tests.support.http_upstream import http_upstream
from tests.support.wire_values import call_frame, forwardable, same, values

TRANSPORTS = ("stdio", "websocket", "streamable-http")


class _Stack:
    """guard plus its three upstreams, running in a thread with its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.base = ""
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Stack:
        self._thread.start()
        if not self.ready.wait(60) or self.error is not None:
            raise RuntimeError(f"stack did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced by __enter__
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            ws_port = free_port()
            await stack.enter_async_context(ws_upstream_process(ws_port))
            http_url, _ = await stack.enter_async_context(http_upstream())
            cfg = {"server": {"max_message_bytes": 1024 * 1024},
                   "upstreams": {"stdio": {"command": sys.executable, "args": [SCRIPT], "terminate_grace": 1.0},
                                 "websocket": {"url": f"ws://127.0.0.1:{ws_port}/"},
                                 "streamable-http": {"url": http_url}},
                   "auth": {"anonymous_servers": list(TRANSPORTS)}}
            self.base = await stack.enter_async_context(running_guard(cfg))
            self.ready.set()
            await self._stop.wait()


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, ClientConnection]]:
    with _Stack() as stack, contextlib.ExitStack() as conns:
        yield {t: conns.enter_context(connect(f"{stack.base}/mcp/{t}", subprotocols=["mcp"]))  # type: ignore[list-item]
               for t in TRANSPORTS}


def echoed_arguments(transport: str, result: dict[str, Any]) -> Any:
    """What the upstream received as ``arguments``, decoded the way that upstream decoded it."""
    if transport == "websocket":  # ws_upstream.py answers json.dumps(params) as text content
        return json.loads(result["content"][0]["text"])["arguments"]
    return result["params"]["arguments"]


_ids = iter(range(1, 10**9))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values, st.booleans())
def test_every_accepted_value_is_forwarded_unchanged_on_every_transport(
        clients: dict[str, ClientConnection], arguments: Any, raw_utf8: bool) -> None:
    rid = next(_ids)
    frame = call_frame(rid, arguments, raw_utf8)
    reference = json.loads(frame)["params"]["arguments"]
    for transport, ws in clients.items():
        ws.send(frame)
        reply = json.loads(ws.recv(timeout=10))
        assert reply["id"] == rid, (transport, reply)
        if forwardable(reference):
            assert "result" in reply, (transport, frame, reply)
            assert same(echoed_arguments(transport, reply["result"]), reference), (transport, frame)
        else:
            assert reply["error"]["code"] == -32700, (transport, frame, reply)

"""Invalid Unicode, numbers past a double and crashes while handling a frame, over real sockets.

Issue 12 items 7 and 9: a client frame with a lone surrogate is answered -32700 on its id and
the session goes on, on every upstream transport, and never counts as an upstream failure; an
upstream frame guard cannot forward (lone surrogate, ``1e400``) is -31011 for the request it
answers, and the upstream pump keeps running; every transport reads numbers exactly; an
exception while handling a frame answers the request concerned (-32603) instead of killing a
pump in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from guard.config import parse
from guard.context import Direction, MessageContext, Verdict
from guard.jsonrpc import Kind
from guard.pipeline import Pipeline
from guard.runtime import build_runtime
from tests.core.test_relay_bad_input import SCRIPT, call, req
from tests.support.guard_server import free_port, running_runtime, ws_upstream_process
from tests.support.http_upstream import http_upstream

SURROGATE_CALL = ('{"jsonrpc":"2.0","id":%d,"method":"tools/call",'
                  '"params":{"name":"echo","arguments":{"text":"x\\ud800"}}}')


@contextlib.asynccontextmanager
async def guard_for(transport: str, tmp_path: Path, *, stage: Any = None,
                    **upstream: Any) -> AsyncIterator[tuple[str, Path]]:
    """guard in front of one upstream of ``transport``; yields the endpoint URL and a record file."""
    record = tmp_path / "stdio.jsonl"
    async with contextlib.AsyncExitStack() as stack:
        if transport == "stdio":
            settings: dict[str, Any] = {"command": sys.executable, "args": [SCRIPT], "terminate_grace": 1.0,
                                        "env": {"RECORD": str(record)}}
        elif transport == "websocket":
            port = free_port()
            await stack.enter_async_context(ws_upstream_process(port))
            settings = {"url": f"ws://127.0.0.1:{port}/"}
        else:
            url, _ = await stack.enter_async_context(http_upstream())
            settings = {"url": url}
        cfg = {"upstreams": {"u": {**settings, **upstream}}, "auth": {"anonymous_servers": ["u"]}}
        runtime = build_runtime(parse(cfg))
        if stage is not None:
            runtime.pipeline = Pipeline([*runtime.pipeline.stages, stage])
        base = await stack.enter_async_context(running_runtime(runtime))
        yield f"{base}/mcp/u", record


def connect_from(url: str, host: str = "127.0.0.1") -> Any:
    """A client connection from loopback address ``host``: anonymous principals count per address."""
    return connect(url, subprotocols=["mcp"], local_addr=(host, 0))  # type: ignore[list-item]


@pytest.mark.parametrize("transport", ["stdio", "websocket", "streamable-http"])
async def test_lone_surrogate_does_not_trip_breaker(transport: str, tmp_path: Path) -> None:
    async with guard_for(transport, tmp_path, breaker_failures=2, breaker_reset=60) as (url, record):
        for host in ("127.0.0.1", "127.0.0.2"):
            async with connect_from(url, host) as ws:
                for rid in range(1, 6):
                    reply = await call(ws, SURROGATE_CALL % rid)
                    assert reply["id"] == rid and reply["error"]["code"] == -32700, reply
                assert "result" in await call(ws, req(99, "ping"))  # the session goes on
        async with connect_from(url) as ws:  # no 503: the breaker never counted any of it
            assert "result" in await call(ws, req(1, "ping"))
    if transport == "stdio":
        forwarded = [json.loads(line) for line in record.read_text().splitlines()]
        assert {m["method"] for m in forwarded} == {"ping"}  # nothing invalid reached the upstream


async def upstream_raw_result(ws: ClientConnection, rid: int, text: str) -> dict[str, Any]:
    return await call(ws, req(rid, "test/raw_result", {"text": text}))


@pytest.mark.parametrize("transport", ["stdio", "websocket", "streamable-http"])
@pytest.mark.parametrize("text", ['{"big":123456789012345678901234567890,"x":1e400}', '{"x":-1E+999}',
                                  '{"s":"x\\ud800"}', '{"\\udc00":1}'],
                         ids=["big-int-and-1e400", "1e400", "lone-surrogate", "surrogate-key"])
async def test_upstream_frame_guard_cannot_forward_is_an_error_for_its_id_and_the_pump_lives(
        transport: str, text: str, tmp_path: Path) -> None:
    async with guard_for(transport, tmp_path) as (url, _), connect_from(url) as ws:
        reply = await upstream_raw_result(ws, 7, text)
        assert reply["id"] == 7 and reply["error"]["code"] == -31011, reply
        assert reply["error"]["data"] == {"reason": "invalid_upstream_response"}
        assert "result" in await call(ws, req(8, "ping"))  # still answering: the pump did not die
        assert (await upstream_raw_result(ws, 9, '{"ok":1}'))["result"] == {"ok": 1}


async def test_invalid_utf8_from_a_stdio_upstream_is_an_error_for_its_id_not_replaced(tmp_path: Path) -> None:
    async with guard_for("stdio", tmp_path) as (url, _), connect_from(url) as ws:
        reply = await call(ws, req(3, "test/invalid_utf8"))
        assert reply["id"] == 3 and reply["error"]["code"] == -31011, reply  # never a silent U+FFFD
        assert "result" in await call(ws, req(4, "ping"))


@pytest.mark.parametrize("transport", ["stdio", "websocket", "streamable-http"])
async def test_every_transport_reads_big_integers_and_ids_exactly(transport: str, tmp_path: Path) -> None:
    big = 2**70 + 1
    async with guard_for(transport, tmp_path) as (url, _), connect_from(url) as ws:
        reply = await upstream_raw_result(ws, big, '{"n":' + str(big) + ',"f":0.1,"t":1e-400}')
        assert reply == {"jsonrpc": "2.0", "id": big, "result": {"n": big, "f": 0.1, "t": 0.0}}
        if transport == "streamable-http":
            echoed = await call(ws, req("s", "test/sse", {"n": big}))  # an SSE reply too
            assert echoed["result"]["params"] == {"n": big}


class _CrashOnResults:
    """A stage with a bug: it raises on every upstream result (never on errors guard builds)."""

    name = "crash"
    sees_rejections = True

    async def process(self, ctx: MessageContext) -> Verdict:
        if ctx.direction is Direction.SERVER_TO_CLIENT and ctx.message.kind is Kind.RESULT:
            raise RuntimeError("bug")
        return Verdict.proceed()


async def test_exception_while_handling_an_upstream_answer_is_an_error_for_its_id(tmp_path: Path) -> None:
    async with guard_for("stdio", tmp_path, stage=_CrashOnResults()) as (url, _), connect_from(url) as ws:
        for rid in (1, 2):  # the same defined outcome every time: the pump survives the first
            reply = await call(ws, req(rid, "ping"))
            assert reply["id"] == rid and reply["error"]["code"] == -32603, reply
            assert reply["error"]["data"] == {"reason": "internal_error"}


async def test_ping_after_bad_upstream_frames_is_still_answered_within_the_call_timeout(tmp_path: Path) -> None:
    async with guard_for("stdio", tmp_path, call_timeout=5) as (url, _), connect_from(url) as ws:
        await upstream_raw_result(ws, 1, '{"big":123456789012345678901234567890,"x":1e400}')
        reply = await asyncio.wait_for(call(ws, req(2, "ping")), 3)
        assert reply["id"] == 2 and "result" in reply

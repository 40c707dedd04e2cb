"""Reconnect to WebSocket and Streamable HTTP upstreams where the session allows it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.core.test_relay_bad_input import call, req
from tests.support.guard_server import free_port, running_guard, ws_upstream_process

pytestmark = pytest.mark.slow


def config(port: int, **upstream: Any) -> dict[str, Any]:
    return {"upstreams": {"ws": {"url": f"ws://127.0.0.1:{port}/", **upstream}},
            "auth": {"anonymous_servers": ["ws"]}}


async def test_websocket_upstream_drop_fails_in_flight_then_resumes_legacy_session() -> None:
    port = free_port()
    async with running_guard(config(port)) as base:
        async with ws_upstream_process(port, "--strict") as first:
            ws = await connect(f"{base}/mcp/ws", subprotocols=["mcp"])
            init = await call(ws, req(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                                        "clientInfo": {"name": "t", "version": "1"}}))
            assert "result" in init
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            assert "result" in await call(ws, req(2, "tools/call", {"name": "echo"}))
            await ws.send(json.dumps(req(3, "test/hang")))
            await asyncio.sleep(0.2)
            first.kill()
            await first.wait()
            async with ws_upstream_process(port, "--strict"):
                lost = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert lost["id"] == 3 and lost["error"]["code"] == -31004
                assert lost["error"]["data"] == {"reason": "upstream_reconnected"}
                # The strict upstream answers only because guard replayed initialize for us.
                resumed = await call(ws, req(4, "tools/call", {"name": "echo"}))
                assert "result" in resumed, resumed
            await ws.close()


@pytest.mark.parametrize("attempts", [2, 0], ids=["after-retries", "reconnect-disabled"])
async def test_websocket_upstream_that_stays_down_ends_the_session_1011(attempts: int) -> None:
    port = free_port()
    async with running_guard(config(port, reconnect_attempts=attempts)) as base:
        async with ws_upstream_process(port) as only:
            ws = await connect(f"{base}/mcp/ws", subprotocols=["mcp"])
            await call(ws, req(1, "ping"))
            only.kill()
            await only.wait()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10 if attempts else 5)
        assert ws.close_code == 1011


@contextlib.asynccontextmanager
async def demo_http(port: int) -> AsyncIterator[Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guard.demo", "--transport", "streamable-http", "--host", "127.0.0.1",
        "--port", str(port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 20)  # prints its URL once listening
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def test_streamable_http_upstream_outage_fails_one_call_and_the_session_survives() -> None:
    port = free_port()
    cfg = {"upstreams": {"demo": {"url": f"http://127.0.0.1:{port}/mcp"}}, "auth": {"anonymous_servers": ["demo"]}}
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {}}
    params = {"name": "echo", "arguments": {"text": "hi"}, "_meta": meta}
    async with demo_http(port):
        async with running_guard(cfg) as base:
            ws = await connect(f"{base}/mcp/demo", subprotocols=["mcp"])
            assert "result" in await call(ws, req(1, "tools/call", params))
            # stop the upstream under a live session (modern era: stateless, so no session to lose)
            await _stop_demo(port)
            failed = await call(ws, req(2, "tools/call", params))
            assert failed["error"]["code"] == -31004
            async with demo_http(port):
                again = await call(ws, req(3, "tools/call", params))
                assert "result" in again, again
            await ws.close()


async def _stop_demo(port: int) -> None:
    import subprocess

    subprocess.run(["pkill", "-f", f"guard.demo --transport streamable-http --host 127.0.0.1 --port {port}"],
                   check=False)
    for _ in range(100):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            await asyncio.sleep(0.05)
        except OSError:
            return

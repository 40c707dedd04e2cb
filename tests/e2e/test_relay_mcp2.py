"""End to end: the official Python SDK 2.x client through guard, in both protocol eras.

The client speaks WebSocket to guard via :func:`guard.client.websocket_client`; guard
relays to the bundled demo server (official SDK, stdio and Streamable HTTP). Every
result through guard must equal the same call made directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from guard.client import websocket_client
from tests.e2e.clients import direct
from tests.support.guard_server import running_guard

pytestmark = pytest.mark.e2e

MODES = ["legacy", "2026-07-28"]

SCRIPT = [
    {"op": "list_tools"},
    {"op": "list_resources"},
    {"op": "list_resource_templates"},
    {"op": "list_prompts"},
    {"op": "call_tool", "name": "find_customer", "arguments": {"query": "Lovelace"}},
    {"op": "call_tool", "name": "list_customers"},
    {"op": "read_resource", "uri": "customers://directory"},
    {"op": "get_prompt", "name": "summarize_customer", "arguments": {"customer_id": "C001"}},
    {"op": "call_tool", "name": "draft_message", "arguments": {"customer_id": "C001", "topic": "renewal"}},
    {"op": "call_tool", "name": "update_email", "arguments": {"customer_id": "C002"}},
    {"op": "call_tool", "name": "list_client_roots"},
    {"op": "call_tool", "name": "export_customers", "progress": True},
    {"op": "call_tool", "name": "get_customer", "arguments": {"customer_id": "nope"}},  # a tool error
]
BASIC = [*SCRIPT[:8], SCRIPT[-1]]
"""Lists, calls, a resource, a prompt and a tool error: no server->client requests."""


def stdio_config() -> dict[str, Any]:
    return {
        "upstreams": {"demo": {"command": sys.executable, "args": ["-m", "guard.demo"]}},
        "auth": {"anonymous_servers": ["demo"]},
    }


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def demo_http_server() -> Iterator[str]:
    """The demo server over Streamable HTTP, as a real separate process on loopback."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard.demo", "--transport", "streamable-http", "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.closing(socket.socket()) as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError("demo server exited")
            import time

            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def normalize(result: dict[str, Any]) -> dict[str, Any]:
    """Drop what legitimately differs between two connections (progress tokens, ids)."""
    out = dict(result)
    out.pop("server", None)
    for note in out.get("notifications", []):
        params = note.get("params") or {}
        params.pop("progressToken", None)
    return out


@contextlib.asynccontextmanager
async def through_guard(cfg: dict[str, Any]) -> AsyncIterator[str]:
    async with running_guard(cfg) as base:
        yield f"{base}/mcp/demo"


@pytest.mark.parametrize("mode", MODES)
async def test_stdio_demo_through_guard_equals_direct(mode: str) -> None:
    async with through_guard(stdio_config()) as url:
        via = await direct.run_script(websocket_client(url), {"steps": SCRIPT, "log_level": "info"}, mode=mode)
    straight = await direct.run_script(direct.demo_params(), {"steps": SCRIPT, "log_level": "info"}, mode=mode)
    assert "error" not in via, via
    assert normalize(via) == normalize(straight)
    ops = {r["op"] for r in via["results"] if "result" in r}
    assert {"list_tools", "call_tool", "read_resource", "get_prompt"} <= ops
    # server->client features round-tripped (legacy: real requests; modern: inputRequests retried)
    methods = {r["method"] for r in via["requests"]}
    assert {"sampling/createMessage", "elicitation/create", "roots/list"} <= methods
    assert any(n.get("method") == "notifications/progress" for n in via["notifications"])


@pytest.mark.parametrize("mode", MODES)
async def test_streamable_http_upstream_equals_direct(mode: str) -> None:
    with demo_http_server() as http_url:
        cfg = {"upstreams": {"demo": {"url": http_url}}, "auth": {"anonymous_servers": ["demo"]}}
        async with through_guard(cfg) as url:
            via = await direct.run_script(websocket_client(url), {"steps": BASIC}, mode=mode)
        straight = await direct.run_script(http_url, {"steps": BASIC}, mode=mode)
    assert "error" not in via, via
    assert normalize(via) == normalize(straight)


async def test_many_concurrent_sessions_each_get_their_own_answers() -> None:
    async with through_guard(stdio_config()) as url:

        async def one(i: int) -> Any:
            steps = [{"op": "call_tool", "name": "echo", "arguments": {"text": f"session-{i}"}}]
            return await direct.run_script(websocket_client(url), {"steps": steps}, mode="legacy")

        results = await asyncio.gather(*(one(i) for i in range(5)))
    for i, res in enumerate(results):
        assert f"session-{i}" in str(res["results"][0]["result"]), res


async def test_websocket_client_refused_handshake_raises_and_leaks_nothing() -> None:
    from websockets.exceptions import InvalidStatus

    async with through_guard(stdio_config()) as url:
        with pytest.raises(InvalidStatus):
            async with websocket_client(url.replace("/mcp/demo", "/mcp/nope")):
                pass

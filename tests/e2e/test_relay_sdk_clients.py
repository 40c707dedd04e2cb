"""End to end with the other official clients and upstreams.

* Python ``mcp`` 1.x ``websocket_client`` + ``ClientSession`` (legacy era), through guard
  to a WebSocket upstream written with ``mcp`` 1.x and to the bundled demo over stdio.
* TypeScript SDK 1.x ``WebSocketClientTransport`` under Node 20, through guard to the demo
  and to ``@modelcontextprotocol/server-everything`` over stdio, with its sampling,
  elicitation, roots, progress and list-changed features.

Each result through guard is compared with the same client talking to the same server
directly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_demo_direct import MCP1_PYTHON, ROOT, mcp1_ws_server, needs_mcp1, needs_node, run_cli
from tests.e2e.test_relay_mcp2 import SCRIPT as DEMO_SCRIPT
from tests.e2e.test_relay_mcp2 import stdio_config
from tests.support.guard_server import running_guard

pytestmark = pytest.mark.e2e

EVERYTHING = str(ROOT / "tests/e2e/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")


WS_SCRIPT = [
    {"op": "list_tools"},
    {"op": "call_tool", "name": "add", "arguments": {"a": 2, "b": 3}},
    {"op": "call_tool", "name": "ask_llm", "arguments": {"prompt": "hello"}},
    {"op": "call_tool", "name": "log", "arguments": {"message": "a log line"}},
]

EVERYTHING_SCRIPT = [
    {"op": "sleep", "seconds": 0.8},
    {"op": "list_tools"},
    {"op": "list_resources"},
    {"op": "list_prompts"},
    {"op": "call_tool", "name": "echo", "arguments": {"message": "hello through guard"}},
    {"op": "call_tool", "name": "get-sum", "arguments": {"a": 2, "b": 40}},
    {"op": "call_tool", "name": "trigger-sampling-request", "arguments": {"prompt": "write a haiku", "maxTokens": 50}},
    {"op": "call_tool", "name": "trigger-elicitation-request", "arguments": {}},
    {"op": "call_tool", "name": "trigger-long-running-operation", "arguments": {"duration": 0.3, "steps": 3},
     "progress": True},
    {"op": "call_tool", "name": "get-roots-list", "arguments": {}},
]


def strip_volatile(out: dict[str, Any]) -> dict[str, Any]:
    """Remove what legitimately differs between two connections: progress tokens, server-side timing logs."""
    result = {k: v for k, v in out.items() if k not in ("transport", "server", "wire", "close")}
    notes = []
    for note in result.get("notifications", []):
        params = dict(note.get("params") or {})
        params.pop("progressToken", None)
        if note.get("method") == "notifications/message":
            params.pop("data", None)  # server-everything logs random levels/texts
        notes.append({"method": note.get("method"), "params": params})
    result["notifications"] = notes
    return result


@needs_mcp1
async def test_mcp1_client_through_guard_websocket_upstream_equals_direct(tmp_path: Path) -> None:
    async with mcp1_ws_server(tmp_path / "ws.jsonl") as ws_url:
        _, straight = await run_cli(str(MCP1_PYTHON), "tests/e2e/clients/mcp1_client.py", ws_url, script=WS_SCRIPT)
        cfg = {"upstreams": {"ws": {"url": ws_url}}, "auth": {"anonymous_servers": ["ws"]}}
        async with running_guard(cfg) as base:
            code, via = await run_cli(str(MCP1_PYTHON), "tests/e2e/clients/mcp1_client.py", f"{base}/mcp/ws",
                                      script=[*WS_SCRIPT, {"op": "call_tool", "name": "handshake"}])
    assert code == 0, via
    handshake = via["results"].pop()["result"]["structuredContent"]
    assert strip_volatile(via) == strip_volatile(straight)
    assert via["requests"][0]["method"] == "sampling/createMessage"
    assert handshake["sec-websocket-protocol"] == "mcp"
    assert "authorization" not in handshake


@needs_mcp1
async def test_mcp1_client_through_guard_to_demo_stdio() -> None:
    async with running_guard(stdio_config()) as base:
        code, out = await run_cli(str(MCP1_PYTHON), "tests/e2e/clients/mcp1_client.py", f"{base}/mcp/demo",
                                  script=DEMO_SCRIPT)
    assert code == 0, out
    assert not any("error" in r for r in out["results"][:-1]), out["results"]
    assert {t["name"] for t in out["results"][0]["result"]["tools"]} >= {"find_customer", "send_message",
                                                                          "delete_customer"}
    assert out["results"][-1]["result"]["isError"] is True
    assert {r["method"] for r in out["requests"]} == {"sampling/createMessage", "elicitation/create", "roots/list"}
    assert any(n["method"] == "notifications/progress" for n in out["notifications"])
    assert any(n["method"] == "notifications/message" for n in out["notifications"])


@needs_node
async def test_typescript_client_through_guard_to_demo_equals_direct() -> None:
    _, straight = await run_cli("node", "tests/e2e/node/client.mjs", "--stdio", sys.executable, "-m", "guard.demo",
                                script=DEMO_SCRIPT)
    async with running_guard(stdio_config()) as base:
        code, via = await run_cli("node", "tests/e2e/node/client.mjs", "--ws", f"{base}/mcp/demo", script=DEMO_SCRIPT)
    assert code == 0, via
    assert strip_volatile(via) == strip_volatile(straight)
    assert {r["method"] for r in via["requests"]} == {"sampling/createMessage", "elicitation/create", "roots/list"}


@needs_node
async def test_typescript_client_through_guard_to_server_everything() -> None:
    _, straight = await run_cli("node", "tests/e2e/node/client.mjs", "--everything", script=EVERYTHING_SCRIPT)
    cfg = {"upstreams": {"everything": {"command": "node", "args": [EVERYTHING, "stdio"]}},
           "auth": {"anonymous_servers": ["everything"]}}
    async with running_guard(cfg) as base:
        code, via = await run_cli("node", "tests/e2e/node/client.mjs", "--ws", f"{base}/mcp/everything",
                                  script=EVERYTHING_SCRIPT)
    assert code == 0, via
    assert via["results"] == straight["results"]
    methods = {r["method"] for r in via["requests"]}
    assert {"sampling/createMessage", "elicitation/create", "roots/list"} <= methods
    notes = {n["method"] for n in via["notifications"]}
    assert "notifications/tools/list_changed" in notes
    assert "notifications/progress" in notes

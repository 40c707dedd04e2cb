"""The other official clients over Streamable HTTP (and HTTP+SSE) through guard, each equal to direct.

* Python ``mcp`` 1.x ``streamablehttp_client`` (and its 2024-11-05 ``sse_client``), legacy era,
  compared with the same client talking to the demo server's own Streamable HTTP endpoint;
* TypeScript SDK 1.x ``StreamableHTTPClientTransport`` (and ``SSEClientTransport``) under Node,
  compared with the same client launching the server over stdio: the demo, and
  ``@modelcontextprotocol/server-everything`` (sampling, elicitation, roots, progress,
  list_changed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.test_demo_direct import MCP1_PYTHON, needs_mcp1, needs_node, run_cli
from tests.e2e.test_full_stack import EMAIL, stack
from tests.e2e.test_relay_mcp2 import SCRIPT as DEMO_SCRIPT
from tests.e2e.test_relay_mcp2 import demo_http_server, stdio_config
from tests.e2e.test_relay_sdk_clients import EVERYTHING, EVERYTHING_SCRIPT, strip_volatile
from tests.front.test_sdk2_http import http
from tests.support.guard_server import running_guard, running_runtime

pytestmark = pytest.mark.e2e

MCP1 = (str(MCP1_PYTHON), "tests/e2e/clients/mcp1_client.py")
NODE = ("node", "tests/e2e/node/client.mjs")


def same(via: dict, straight: dict) -> None:
    assert "error" not in via, via
    assert strip_volatile(via) == strip_volatile(straight)


@needs_mcp1
@pytest.mark.parametrize("flags", [(), ("--sse",)], ids=["streamable-http", "http+sse"])
async def test_mcp1_client_over_http_equals_direct(flags: tuple[str, ...]) -> None:
    with demo_http_server() as demo_url:
        _, straight = await run_cli(*MCP1, demo_url, script=DEMO_SCRIPT)
    async with running_guard(stdio_config()) as base:
        code, via = await run_cli(*MCP1, *flags, f"{http(base)}/mcp/demo", script=DEMO_SCRIPT)
    assert code == 0, via
    assert via["transport"] == ("sse" if flags else "http")
    same(via, straight)
    assert {r["method"] for r in via["requests"]} == {"sampling/createMessage", "elicitation/create", "roots/list"}


@needs_node
@pytest.mark.parametrize("transport", ["--http", "--sse"])
async def test_typescript_client_over_http_to_demo_equals_direct(transport: str) -> None:
    _, straight = await run_cli(*NODE, "--stdio", sys.executable, "-m", "guard.demo", script=DEMO_SCRIPT)
    async with running_guard(stdio_config()) as base:
        code, via = await run_cli(*NODE, transport, f"{http(base)}/mcp/demo", script=DEMO_SCRIPT)
    assert code == 0, via
    same(via, straight)
    assert {r["method"] for r in via["requests"]} == {"sampling/createMessage", "elicitation/create", "roots/list"}


@needs_node
async def test_typescript_client_over_http_to_server_everything() -> None:
    _, straight = await run_cli(*NODE, "--everything", script=EVERYTHING_SCRIPT)
    cfg = {"upstreams": {"everything": {"command": "node", "args": [EVERYTHING, "stdio"]}},
           "auth": {"anonymous_servers": ["everything"]}}
    async with running_guard(cfg) as base:
        code, via = await run_cli(*NODE, "--http", f"{http(base)}/mcp/everything", script=EVERYTHING_SCRIPT)
    assert code == 0, via
    assert via["results"] == straight["results"]
    assert {"sampling/createMessage", "elicitation/create", "roots/list"} <= {r["method"] for r in via["requests"]}
    notes = {n["method"] for n in via["notifications"]}
    assert {"notifications/tools/list_changed", "notifications/progress"} <= notes


STACK_SCRIPT = [
    {"op": "call_tool", "name": "find_customer", "arguments": {"query": "Johnson"}},
    {"op": "call_tool", "name": "delete_customer", "arguments": {"customer_id": "C002"}},
]


@needs_mcp1
@needs_node
@pytest.mark.parametrize("client", ["mcp1", "node"])
async def test_sdk_1x_clients_with_a_token_through_the_whole_stack(tmp_path: Path, client: str) -> None:
    """Auth, policy and PII over Streamable HTTP for the 1.x clients: tokens in results, the denial's code."""
    runtime, tokens = stack(tmp_path, tmp_path / "record.jsonl")
    argv = MCP1 if client == "mcp1" else (*NODE, "--http")
    header = f"Authorization: Bearer {tokens['alice']}"
    async with running_runtime(runtime) as base:
        code, out = await run_cli(*argv, f"{http(base)}/mcp/demo", "--header", header, script=STACK_SCRIPT)
    assert code == 0, out
    found, denied = out["results"]
    assert "<pii:EMAIL_ADDRESS:" in str(found["result"]) and EMAIL not in str(found["result"])
    assert denied["error"]["code"] == -31001

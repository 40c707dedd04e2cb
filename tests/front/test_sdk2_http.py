"""The official Python SDK 2.x client over Streamable HTTP, through guard, in both eras.

``mcp.Client(url)`` speaks Streamable HTTP straight to guard's ``/mcp/<name>`` (no adapter):
legacy era (``initialize``, ``Mcp-Session-Id``, server->client requests on the POST stream)
and 2026-07-28 (stateless requests, ``InputRequiredResult`` retries). Every result, server
request and notification must equal what the same client sees talking to the demo directly.
"""

from __future__ import annotations

import pytest

from tests.e2e.clients import direct
from tests.e2e.test_relay_mcp2 import SCRIPT, normalize, stdio_config
from tests.support.guard_server import running_guard

pytestmark = pytest.mark.e2e

MODES = ["legacy", "2026-07-28"]


def http(base: str) -> str:
    return base.replace("ws://", "http://", 1)


@pytest.mark.parametrize("mode", MODES)
async def test_sdk2_client_over_streamable_http_equals_direct(mode: str) -> None:
    script = {"steps": SCRIPT, "log_level": "info"}
    async with running_guard(stdio_config()) as base:
        via = await direct.run_script(f"{http(base)}/mcp/demo", script, mode=mode)
    straight = await direct.run_script(direct.demo_params(), script, mode=mode)
    assert "error" not in via, via
    assert normalize(via) == normalize(straight)
    methods = {r["method"] for r in via["requests"]}
    assert {"sampling/createMessage", "elicitation/create", "roots/list"} <= methods
    assert any(n.get("method") == "notifications/progress" for n in via["notifications"])
    assert any(n.get("method") == "notifications/message" for n in via["notifications"])

"""Issue 12 item 15 on the wire: nesting the PII walker cannot handle never passes, even ``fail_open``.

A real guard (PII stage on, the upstream listed in ``[pii] fail_open``) in front of a WebSocket
upstream that answers with raw JSON text: a result nested 400 levels deep is refused -31002
``pii_too_deep`` instead of being passed unscanned (``fail_open`` is for analyzer outages only,
not for input an attacker shaped), and a client request nested as deep never reaches the upstream.
The session goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guard import devkeys
from guard.config import parse
from guard.runtime import build_runtime
from tests.core.test_relay_bad_input import call, req
from tests.core.test_relay_wire_values import connect_from
from tests.pii.conftest import RULES_FILE
from tests.support.guard_server import free_port, running_runtime, ws_upstream_process

pytestmark = pytest.mark.e2e


def nested(levels: int) -> str:
    return '{"a":' * levels + '"call +1 (212) 555-0187"' + "}" * levels


async def test_deeply_nested_result_passes_no_fail_open_server_unscanned(tmp_path: Path) -> None:
    devkeys.generate_all(tmp_path / "keys")
    port = free_port()
    cfg: dict[str, Any] = {
        "upstreams": {"u": {"url": f"ws://127.0.0.1:{port}/"}},
        "auth": {"anonymous_servers": ["u"]},
        "pii": {"rules": str(RULES_FILE), "keyring_file": str(tmp_path / "keys" / "pii-keyring.json"),
                "workers": 0, "fail_open": ["u"]},
    }
    async with ws_upstream_process(port), running_runtime(build_runtime(parse(cfg))) as base, \
            connect_from(f"{base}/mcp/u") as ws:
        reply = await call(ws, req(1, "test/deep", {"levels": 400}))
        assert reply["id"] == 1 and reply["error"]["code"] == -31002, reply
        assert reply["error"]["data"]["reason"] == "pii_too_deep"
        assert "555-0187" not in json.dumps(reply)
        request = ('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":'
                   + nested(400) + "}}")
        reply = await call(ws, request)
        assert reply["id"] == 2 and reply["error"]["code"] == -31002, reply  # refused, not forwarded
        assert reply["error"]["data"]["reason"] == "pii_too_deep"
        reply = await call(ws, req(3, "test/deep", {"levels": 20}))  # the session goes on, protected
        assert "result" in reply and "555-0187" not in json.dumps(reply), reply

"""A burst through a real guard process with the PII stage at its defaults: every call succeeds.

Issue 16: 1,000 concurrent sessions making 5 calls each used to get ``pii_overloaded`` on 93%
of calls, because admission counted messages (``max_pending = 64``). Admission is now by
deadline: a message waits unless the backlog ahead of it cannot be analysed within its
timeout, and this burst is far below that.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from guard import devkeys
from tests.pii.conftest import RULES_FILE
from tests.support.guard_server import free_port, guard_process, ws_upstream_process

pytestmark = pytest.mark.slow

SESSIONS = 1000
CALLS = 5


async def test_thousand_sessions_five_calls_each_all_succeed_with_default_pii_settings(tmp_path: Path) -> None:
    devkeys.generate_all(tmp_path / "keys")
    up_port, guard_port = free_port(), free_port()
    cfg = tmp_path / "guard.toml"
    cfg.write_text(
        "[server]\nhost = \"127.0.0.1\"\nmax_connections_per_principal = 5000\nrate_limit = 0\n"
        "log_level = \"warning\"\n"
        f"[upstreams.ws]\nurl = \"ws://127.0.0.1:{up_port}/\"\n"
        "[auth]\nanonymous_servers = [\"ws\"]\n"
        f"[pii]\nrules = {json.dumps(str(RULES_FILE))}\n"
        f"keyring_file = {json.dumps(str(tmp_path / 'keys' / 'pii-keyring.json'))}\n")  # every other key: default
    async with ws_upstream_process(up_port), guard_process(cfg, guard_port):
        url = f"ws://127.0.0.1:{guard_port}/mcp/ws"
        sockets = []
        for batch in range(0, SESSIONS, 100):
            sockets += await asyncio.gather(*(connect(url, subprotocols=["mcp"], open_timeout=60)
                                              for _ in range(batch, min(batch + 100, SESSIONS))))

        async def calls(i: int, ws: Any) -> list[dict[str, Any]]:
            replies = []
            for j in range(CALLS):
                # Echoed back as the result: PII-free calls and calls whose result carries a phone number.
                arguments = {"i": i, "j": j, "note": "call +1 (212) 555-0187" if j % 2 else "status open"}
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": i * 10 + j, "method": "tools/call",
                                          "params": {"name": "echo", "arguments": arguments}}))
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 120)))
            return replies

        results = await asyncio.gather(*(calls(i, ws) for i, ws in enumerate(sockets)))
        await asyncio.gather(*(ws.close() for ws in sockets))
    errors = [r["error"] for replies in results for r in replies if "error" in r]
    assert errors == [], f"{len(errors)} of {SESSIONS * CALLS} calls failed, e.g. {errors[:3]}"
    for i, replies in enumerate(results):
        assert [r["id"] for r in replies] == [i * 10 + j for j in range(CALLS)]
        masked = replies[1]["result"]["content"][0]["text"]
        assert "555-0187" not in masked and "0187" in masked  # the PII stage really ran (mask keep_last 4)

"""1,000 concurrent WebSocket sessions through a real guard process, calls flowing on every one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.support.guard_server import free_port, guard_process, rss_of, ws_upstream_process

pytestmark = pytest.mark.slow

SESSIONS = 1000


async def test_thousand_sessions_every_request_answered_once(tmp_path: Path) -> None:
    up_port, guard_port = free_port(), free_port()
    cfg = tmp_path / "guard.toml"
    cfg.write_text(
        "[server]\nhost = \"127.0.0.1\"\nmax_connections_per_principal = 5000\nrate_limit = 0\n"
        "log_level = \"warning\"\n"
        f"[upstreams.ws]\nurl = \"ws://127.0.0.1:{up_port}/\"\n"
        "[auth]\nanonymous_servers = [\"ws\"]\n")
    async with ws_upstream_process(up_port), guard_process(cfg, guard_port) as guard:
        idle_rss = rss_of(guard.pid)
        url = f"ws://127.0.0.1:{guard_port}/mcp/ws"
        sockets = []
        for batch in range(0, SESSIONS, 100):
            sockets += await asyncio.gather(*(connect(url, subprotocols=["mcp"], open_timeout=30)
                                              for _ in range(batch, min(batch + 100, SESSIONS))))
        await asyncio.sleep(1.0)
        held_rss = rss_of(guard.pid)
        per_session = (held_rss - idle_rss) / SESSIONS
        print(f"\nguard RSS idle {idle_rss / 1e6:.1f} MB, with {SESSIONS} idle sessions "
              f"{held_rss / 1e6:.1f} MB: {per_session / 1024:.1f} KiB per idle session")

        async def exchange(i: int, ws: object) -> list[int]:
            ids = []
            for j in range(3):
                rid = i * 10 + j
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",  # type: ignore[attr-defined]
                                          "params": {"name": "echo", "arguments": {"i": i}}}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 60))  # type: ignore[attr-defined]
                ids.append(reply["id"])
            return ids

        results = await asyncio.gather(*(exchange(i, ws) for i, ws in enumerate(sockets)))
        for i, ids in enumerate(results):
            assert ids == [i * 10, i * 10 + 1, i * 10 + 2]
        # no stray extra responses: every socket is quiet now
        extra = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 0.05) for ws in sockets[:50]),
                                     return_exceptions=True)
        assert all(isinstance(e, TimeoutError | asyncio.TimeoutError) for e in extra)
        await asyncio.gather(*(ws.close() for ws in sockets))
        assert per_session < 100 * 1024  # target: <= 100 MB for 1,000 idle sessions

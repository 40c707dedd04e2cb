"""One guard replica with ``[cluster]`` and its Redis unreachable: the documented outcome at the edge.

``fallback = "closed"``: new connections get HTTP 503 ``shared_state_unavailable`` before the
upgrade and ``/readyz`` is 503; ``fallback = "local"``: the replica serves with its local share
and stays ready, its ``redis`` check saying it is degraded.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.core.test_relay_bad_input import call, req, scripted
from tests.support.guard_server import free_port, running_guard


def clustered(fallback: str) -> dict[str, Any]:
    cfg = scripted()
    cfg["cluster"] = {"redis_url": f"redis://127.0.0.1:{free_port()}/0", "fallback": fallback}
    return cfg


async def test_redis_away_with_fallback_closed_refuses_connections_503_and_is_not_ready() -> None:
    async with running_guard(clustered("closed")) as base, httpx.AsyncClient() as http:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{base}/mcp/s", subprotocols=["mcp"])
        assert refused.value.response.status_code == 503
        assert b"shared state unavailable" in refused.value.response.body
        ready = await http.get(base.replace("ws://", "http://") + "/readyz")
        assert ready.status_code == 503 and not ready.json()["checks"]["redis"]["ok"]


async def test_redis_away_with_fallback_local_serves_and_stays_ready() -> None:
    async with running_guard(clustered("local")) as base, httpx.AsyncClient() as http:
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
            assert "result" in await call(ws, req(1, "tools/list"))
        ready = await http.get(base.replace("ws://", "http://") + "/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["redis"]["detail"].startswith("degraded")
        metrics = (await http.get(base.replace("ws://", "http://") + "/metrics")).text
        assert "guard_cluster_redis_up 0.0" in metrics

"""The circuit breaker against hostile callers, with two real principals over real sockets.

Issue 12, item 8: one principal's timeouts cannot take the upstream away from everyone; the
half-open probe is a real upstream call, released on every outcome (denial, cancel, timeout,
session end), so nothing wedges the breaker half-open; handshakes never consume it; timeouts
the client causes (an elicitation it never answers) are not upstream failures.

guard fronts the scripted stdio upstream (``test/hang`` never answers, ``test/elicit`` asks
the client a question and waits) with ``call_timeout = 0.4``, ``breaker_failures = 2`` and
``breaker_reset = 1``; alice, bob and carol hold real HS256 tokens.
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
from websockets.exceptions import InvalidStatus

from tests.core.test_relay_bad_input import SCRIPT, call, req
from tests.support.guard_server import running_guard
from tests.support.http_upstream import http_upstream
from tests.support.tokens import auth_config, bearer

pytestmark = pytest.mark.slow

RESET = 1.0
POLICY = "p, *, s, **, **, allow\np, *, s, tools/call, forbidden, deny\n"


@contextlib.asynccontextmanager
async def guard(tmp_path: Path) -> AsyncIterator[str]:
    policy = tmp_path / "policy.csv"
    policy.write_text(POLICY)
    cfg = {"upstreams": {"s": {"command": sys.executable, "args": [SCRIPT], "terminate_grace": 1.0,
                               "call_timeout": 0.4, "breaker_failures": 2, "breaker_reset": RESET}},
           "auth": auth_config(), "policy": {"policy": str(policy)}}
    async with running_guard(cfg) as base:
        yield f"{base}/mcp/s"


def session(url: str, who: str) -> Any:
    return connect(url, subprotocols=["mcp"], additional_headers=bearer(who))  # type: ignore[list-item]


async def hang(ws: ClientConnection, rid: int) -> dict[str, Any]:
    return await call(ws, req(rid, "test/hang"))


async def open_breaker(url: str) -> None:
    """alice and bob each have one call time out: failures from two principals open it."""
    async with session(url, "alice") as a, session(url, "bob") as b:
        replies = await asyncio.gather(hang(a, 1), hang(b, 1))
    assert all(r["error"]["code"] == -31005 for r in replies)
    await expect_refused(url)


async def expect_refused(url: str, headers: dict[str, str] | None = None) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, subprotocols=["mcp"],  # type: ignore[list-item]
                           additional_headers=bearer("carol") if headers is None else headers):
            pass
    assert info.value.response.status_code == 503


async def test_one_principal_cannot_open_the_breaker_for_everyone(tmp_path: Path) -> None:
    async with guard(tmp_path) as url:
        async with session(url, "mallory") as m:
            for rid in range(1, 7):
                await m.send(json.dumps(req(rid, "test/hang")))
            answers = [json.loads(await asyncio.wait_for(m.recv(), 10)) for _ in range(6)]
            assert sorted(a["id"] for a in answers) == list(range(1, 7))
            assert all(a["error"]["code"] == -31005 for a in answers)
            assert "result" in await call(m, req(7, "ping"))
        async with session(url, "alice") as a:  # no 503, no -31013: mallory hurt only mallory
            assert "result" in await call(a, req(1, "ping"))


async def test_two_principals_open_the_breaker_and_a_real_call_closes_it(tmp_path: Path) -> None:
    async with guard(tmp_path) as url:
        async with session(url, "dave") as d:  # connected before: its calls fail fast while open
            await open_breaker(url)
            fast = await call(d, req(1, "ping"))
            assert fast["error"]["code"] == -31013 and fast["error"]["data"] == {"reason": "circuit_open"}
            await asyncio.sleep(RESET + 0.1)
            async with session(url, "alice") as a, session(url, "bob") as b, session(url, "carol") as c:
                # three handshakes in half-open: none of them took the probe
                assert "result" in await call(c, req(1, "ping"))  # the probe: a real call, answered
                assert "result" in await call(a, req(1, "ping"))
                assert "result" in await call(b, req(1, "ping"))
                assert "result" in await call(d, req(2, "ping"))


async def _deny(ws: ClientConnection) -> None:
    reply = await call(ws, req(10, "tools/call", {"name": "forbidden"}))
    assert reply["error"]["code"] == -31001


async def _cancel(ws: ClientConnection) -> None:
    await ws.send(json.dumps(req(10, "test/hang")))
    await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 10}}))


async def _time_out(ws: ClientConnection) -> None:
    assert (await hang(ws, 10))["error"]["code"] == -31005


async def _listen(ws: ClientConnection) -> None:
    reply = await call(ws, req(10, "subscriptions/listen", {}))
    assert reply["error"]["code"] == -31013  # a stream never ends on its own: it cannot be the probe


@pytest.mark.parametrize("outcome", [_deny, _cancel, _time_out, _listen, None],
                         ids=["denied", "cancelled", "timed-out", "listen", "session-ended"])
async def test_breaker_probe_released_after_denied_call(tmp_path: Path, outcome: Any) -> None:
    async with guard(tmp_path) as url:
        await open_breaker(url)
        await asyncio.sleep(RESET + 0.1)
        async with session(url, "alice") as a:
            if outcome is None:
                async with session(url, "alice") as gone:  # takes the probe, then leaves with it
                    await gone.send(json.dumps(req(10, "test/hang")))
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.2)
            else:
                await outcome(a)
            probe = await call(a, req(11, "ping"))
            assert "result" in probe, probe  # the probe was released: alice's next call went through
        async with session(url, "bob") as b:  # and closed the breaker for everyone
            assert "result" in await call(b, req(1, "ping"))


async def test_unanswered_elicitation_timeouts_do_not_count_against_the_breaker(tmp_path: Path) -> None:
    async with guard(tmp_path) as url:
        async with session(url, "alice") as a, session(url, "bob") as b:
            for ws in (a, b):
                for rid in (1, 2):
                    await ws.send(json.dumps(req(rid, "test/elicit")))
                    asked = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert asked["method"] == "elicitation/create"  # never answered by the client
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    assert reply["id"] == rid and reply["error"]["code"] == -31005
        async with session(url, "carol") as c:  # four timeouts from two principals: still closed
            assert "result" in await call(c, req(1, "ping"))


@pytest.mark.parametrize("status,opens", [(400, False), (404, False), (500, True), (503, True)])
async def test_upstream_refusing_a_request_is_not_an_upstream_failure(status: int, opens: bool) -> None:
    """Streamable HTTP: a 4xx answers the client's request (its doing); a 5xx is the upstream failing."""
    async with http_upstream() as (upstream_url, _):
        cfg = {"upstreams": {"h": {"url": upstream_url, "breaker_failures": 2, "breaker_reset": 60}},
               "auth": {"anonymous_servers": ["h"]}}
        async with running_guard(cfg) as base:
            url = f"{base}/mcp/h"
            for host in ("127.0.0.1", "127.0.0.2"):  # two anonymous principals
                async with connect(url, subprotocols=["mcp"], local_addr=(host, 0)) as ws:  # type: ignore[list-item]
                    for rid in (1, 2):
                        reply = await call(ws, req(rid, "test/status", {"status": status}))
                        if reply["error"]["code"] == -31013:  # opened by now (5xx only)
                            assert opens
                            continue
                        assert reply["error"]["code"] == -31011 and reply["error"]["data"]["status"] == status
            if opens:
                await expect_refused(url, headers={})
            else:
                async with connect(url, subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
                    assert "result" in await call(ws, req(1, "ping"))

"""Every client message's trace ends once, with the outcome the client saw, on every path.

A real guard (tracing on) in front of the scripted stdio upstream that misbehaves on cue, a raw
WebSocket client, a real OTLP/HTTP receiver. One session walks through an upstream that never
answers (guard's -31005), a request the client cancels, a server->client request the client
answers (the answer is its own traced message, named after the request it answers), a method
MCP does not define, and an upstream that dies (-31004).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.core.test_relay_bad_input import call, req, scripted
from tests.support.guard_server import running_guard
from tests.tracing.receiver import otlp_receiver

pytestmark = pytest.mark.e2e
SECRET = "arg-value-never-exported"


async def receive(ws: Any) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


async def test_each_outcome_ends_its_trace_once(tmp_path: Any) -> None:
    async with otlp_receiver() as (endpoint, receiver):
        cfg = scripted({"call_timeout": 1.0})
        cfg["tracing"] = {"endpoint": endpoint, "schedule_delay": 0.2}
        async with running_guard(cfg) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
            timed_out = await call(ws, req(1, "test/hang", {"secret": SECRET}))
            assert timed_out["error"]["code"] == -31005

            await ws.send(json.dumps(req(2, "test/hang", {"secret": SECRET})))
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                      "params": {"requestId": 2, "reason": "user gave up"}}))
            assert "result" in await call(ws, req(3, "ping"))

            await ws.send(json.dumps(req(4, "test/server_request", {"secret": SECRET})))
            asked = await receive(ws)
            assert asked["method"] == "sampling/createMessage"
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": asked["id"], "result": {
                "role": "assistant", "content": {"type": "text", "text": SECRET}, "model": "m"}}))
            answered = await receive(ws)
            assert answered["id"] == 4 and "result" in answered

            assert "result" in await call(ws, req(5, "vendor/custom-method", {"secret": SECRET}))
            died = await call(ws, req(6, "test/die"))
            assert died["error"]["code"] == -31004
    roots = receiver.roots()
    outcomes = Counter((s.name, s.attributes["guard.outcome"]) for s in roots)
    assert outcomes == Counter({
        ("other", "upstream_timeout"): 1,      # test/hang, answered -31005 by guard
        ("other", "cancelled"): 1,             # test/hang, cancelled by the client
        ("notifications/cancelled", "forwarded"): 1,
        ("ping", "ok"): 1,
        ("other", "ok"): 2,                    # test/server_request, vendor/custom-method
        ("sampling/createMessage", "forwarded"): 1,  # the client's answer to guard's forwarded request
        ("other", "upstream_closed"): 1,       # test/die
    }), outcomes
    by_outcome = {s.attributes["guard.outcome"]: s for s in roots}
    assert by_outcome["upstream_timeout"].status == "error"
    assert by_outcome["upstream_timeout"].attributes["error.type"] == "upstream_timeout"
    upstream = [c for c in receiver.children(by_outcome["upstream_timeout"]) if c.name == "upstream"]
    assert len(upstream) == 1 and upstream[0].status == "error"
    assert by_outcome["cancelled"].status == "unset"
    answer = next(s for s in roots if s.name == "sampling/createMessage")
    assert answer.attributes["guard.message.kind"] == "result"
    assert answer.attributes["mcp.method.name"] == "sampling/createMessage"
    assert SECRET.encode() not in b"".join(receiver.raw)
    assert b"vendor/custom-method" not in b"".join(receiver.raw)  # a method MCP does not define is "other"

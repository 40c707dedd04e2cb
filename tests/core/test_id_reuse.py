"""Id reuse after cancel or timeout cannot misattribute a late answer (issue 12, item 10).

The attack: call an export under id 1, cancel it (or let it time out), reuse id 1 for a
harmless tool; the export's late result then arrived as the harmless tool's answer, and was
protected and audited as such. guard now forwards every request under an id of its own and
keeps a cancelled id reserved until the upstream answers it or its deadline passes, so the
late answer is dropped and reserved ids count against ``max_in_flight``. Real guard, the
scripted stdio upstream (it answers in order, sleeping on ``test/slow``), raw WebSocket frames.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from tests.core.test_relay_bad_input import call, req, scripted
from tests.support.guard_server import running_guard

EXPORT = {"seconds": 0.5, "what": "export of every customer"}


def cancel(rid: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": rid}})


async def test_late_answer_to_cancelled_call_is_dropped_not_delivered_for_the_reused_id(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted({"env": {"RECORD": str(record)}})) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "test/slow", EXPORT)))
        await ws.send(cancel(1))
        reused = await call(ws, req(1, "tools/call", {"name": "harmless"}))
        assert reused["error"]["code"] == -32600  # reserved: the export has not been answered yet
        harmless = {"jsonrpc": "2.0", "id": 1, "result": {"method": "tools/call", "params": {"name": "harmless"}}}
        for _ in range(100):  # keep reusing id 1: refused until the export's answer came (and was dropped)
            answer = await call(ws, req(1, "tools/call", {"name": "harmless"}))
            if "result" in answer:
                break
            assert answer["error"]["code"] == -32600
            await asyncio.sleep(0.1)
        assert answer == harmless  # never the export's result
        assert (await call(ws, req(2, "ping")))["id"] == 2  # nothing else was queued for the client
    forwarded = [json.loads(line) for line in record.read_text().splitlines()]
    export = next(m for m in forwarded if m.get("method") == "test/slow")
    cancels = [m["params"]["requestId"] for m in forwarded if m.get("method") == "notifications/cancelled"]
    assert cancels == [export["id"]]  # the cancel names the export under the id guard gave it


async def test_late_answer_to_timed_out_call_is_not_delivered_for_the_reused_id() -> None:
    async with running_guard(scripted({"call_timeout": 1.0})) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await call(ws, req(0, "ping"))  # the upstream process is up: the timings below are its own
        timed_out = await call(ws, req(1, "test/slow", {**EXPORT, "seconds": 1.3}))
        assert timed_out["error"]["code"] == -31005
        # Reuse id 1 at once: the upstream answers the export first, then this call.
        answer = await call(ws, req(1, "tools/call", {"name": "harmless"}))
        assert answer["result"] == {"method": "tools/call", "params": {"name": "harmless"}}, answer


async def test_cancelled_calls_count_against_max_in_flight() -> None:
    async with running_guard(scripted(max_in_flight=2)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        for rid in (1, 2):
            await ws.send(json.dumps(req(rid, "test/hang")))
            await ws.send(cancel(rid))
        reply = await call(ws, req(3, "ping"))
        assert reply["id"] == 3 and reply["error"]["code"] == -31007


async def test_cancel_for_an_id_guard_does_not_track_is_not_forwarded(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted({"env": {"RECORD": str(record)}})) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req("mine", "test/hang")))
        await ws.send(cancel(1))  # guard forwarded "mine" as upstream id 1: this must not cancel it
        await ws.send(cancel("nobody"))
        await call(ws, req(2, "ping"))
    forwarded = [json.loads(line) for line in record.read_text().splitlines()]
    assert [m.get("method") for m in forwarded] == ["test/hang", "ping"]


async def test_cancelled_call_reservation_ends_at_its_deadline() -> None:
    async with running_guard(scripted({"call_timeout": 0.3}, max_in_flight=1)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "test/hang")))
        await ws.send(cancel(1))
        assert (await call(ws, req(2, "ping")))["error"]["code"] == -31007
        await asyncio.sleep(0.5)  # the deadline passed: no answer for the client (it cancelled), slot free
        assert (await call(ws, req(1, "ping")))["result"]["method"] == "ping"

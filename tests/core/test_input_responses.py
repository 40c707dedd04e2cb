"""Modern-era ``inputResponses`` are forwarded only as the answer to an InputRequiredResult guard delivered.

Issue 12, item 11. In 2026-07-28 a server asks for sampling, elicitation or roots inside an
``InputRequiredResult``; the client retries the call with ``params.inputResponses`` and the
opaque ``requestState``. Like a legacy response to a server->client request, a retry is
forwarded only if it answers such a result guard delivered on this session: same method and
target, same ``requestState``, only keys that were asked for, and once. Real guard, the
scripted stdio upstream (``tools/call`` of ``needs_input``), raw WebSocket frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.core.test_relay_bad_input import call, req, scripted
from tests.support.guard_server import running_guard

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
ANSWER = {"confirm": {"action": "accept", "content": {}}}


def retry(rid: int, responses: Any = ANSWER, state: Any = "state-1", name: str = "needs_input") -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": {}, "_meta": META, "inputResponses": responses}
    if state is not None:
        params["requestState"] = state
    return req(rid, "tools/call", params)


def first_call(rid: int, name: str = "needs_input") -> dict[str, Any]:
    return req(rid, "tools/call", {"name": name, "arguments": {}, "_meta": META})


def refused(reply: dict[str, Any]) -> bool:
    error = reply.get("error") or {}
    return error.get("code") == -32602 and error.get("data") == {"reason": "unsolicited_input_responses"}


def forwarded_responses(record: Path) -> list[Any]:
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    return [m["params"]["inputResponses"] for m in lines if "inputResponses" in (m.get("params") or {})]


async def test_forged_input_responses_are_refused(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted({"env": {"RECORD": str(record)}})) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        assert refused(await call(ws, retry(1)))
        assert "result" in await call(ws, req(2, "ping"))
    assert forwarded_responses(record) == []


async def test_input_responses_answering_a_delivered_result_are_forwarded_once(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted({"env": {"RECORD": str(record)}})) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        asked = await call(ws, first_call(1))
        assert asked["result"]["resultType"] == "input_required"
        answered = await call(ws, retry(2))
        assert answered["result"]["params"]["inputResponses"] == ANSWER
        assert refused(await call(ws, retry(3)))  # a replay answers nothing any more
    assert forwarded_responses(record) == [ANSWER]


@pytest.mark.parametrize("bad", [
    retry(2, state="state-2"),
    retry(2, state=None),
    retry(2, responses={**ANSWER, "roots": {"roots": []}}),
    retry(2, name="other_tool"),
    retry(2, responses=["not", "a", "map"]),
], ids=["other-request-state", "no-request-state", "key-never-asked", "other-tool", "not-a-map"])
async def test_input_responses_that_do_not_match_are_refused(bad: dict[str, Any]) -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        assert (await call(ws, first_call(1)))["result"]["resultType"] == "input_required"
        assert refused(await call(ws, bad))
        assert "result" in await call(ws, retry(3))  # the delivered result is still there to answer


async def test_input_responses_for_another_sessions_result_are_refused() -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as other:
        assert (await call(ws, first_call(1)))["result"]["resultType"] == "input_required"
        assert refused(await call(other, retry(2)))

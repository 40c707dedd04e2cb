"""2026-07-28 over HTTP: header/body agreement, cancellation by closing the stream, leased upstreams."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from tests.front.helpers import client, modern_headers, modern_request, scripted_config
from tests.support.guard_server import running_guard

PATH = "/mcp/s"


def received(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


@pytest.mark.parametrize(("headers", "why"), [
    (modern_headers("tools/call", "find_customer"), "Mcp-Name"),           # header names a harmless tool
    (modern_headers("tools/list"), "Mcp-Method"),                          # header names another method
    (modern_headers("tools/call"), "Mcp-Name is required"),
    ({**modern_headers("tools/call", "delete_customer"), "MCP-Protocol-Version": "2025-11-25"},
     "MCP-Protocol-Version"),
    ({k: v for k, v in modern_headers("tools/call", "delete_customer").items() if k != "Mcp-Method"},
     "Mcp-Method is required"),
])
async def test_routing_headers_that_lie_about_the_body_are_refused(tmp_path: Path, headers: dict, why: str) -> None:
    record = tmp_path / "rec.jsonl"
    body = modern_request("tools/call", {"name": "delete_customer", "arguments": {"customer_id": "C001"}}, 7)
    async with running_guard(scripted_config(record)) as base, client(base) as c:
        r = await c.post(PATH, json=body, headers=headers)
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["id"] == 7 and error["error"]["code"] == -32020 and why in error["error"]["message"]
    assert received(record) == []  # never reached the upstream


async def test_duplicated_mcp_name_header_is_refused(tmp_path: Path) -> None:
    """First-copy and last-copy readers would disagree about which tool is called."""
    record = tmp_path / "rec.jsonl"
    body = modern_request("tools/call", {"name": "delete_customer", "arguments": {}}, 1)
    headers = [(k, v) for k, v in modern_headers("tools/call", "find_customer").items()]
    headers.append(("Mcp-Name", "delete_customer"))
    async with running_guard(scripted_config(record)) as base, client(base) as c:
        r = await c.post(PATH, content=json.dumps(body).encode(), headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020
    assert received(record) == []


async def test_base64_encoded_mcp_name_that_matches_is_accepted(tmp_path: Path) -> None:
    name = "caf\u00e9 tool"
    body = modern_request("tools/call", {"name": name, "arguments": {}}, 2)
    encoded = "=?base64?Y2Fmw6kgdG9vbA==?="
    async with running_guard(scripted_config()) as base, client(base) as c:
        r = await c.post(PATH, json=body, headers=modern_headers("tools/call", encoded))
    assert r.status_code == 200 and r.json()["result"]["params"]["name"] == name


async def test_closing_the_response_stream_cancels_the_request_upstream(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted_config(record)) as base, client(base) as c:
        hang = c.stream("POST", PATH, json=modern_request("test/hang", request_id=41),
                        headers=modern_headers("test/hang"))
        task = asyncio.create_task(hang.__aenter__())
        await asyncio.sleep(1.0)  # guard is waiting for the upstream; the client gives up
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pid = int(Path(str(record) + ".pid").read_text())
        for _ in range(100):
            if any(m.get("method") == "notifications/cancelled" for m in received(record)):
                break
            await asyncio.sleep(0.05)
        cancel = next(m for m in received(record) if m.get("method") == "notifications/cancelled")
        hung = next(m for m in received(record) if m.get("method") == "test/hang")
        assert cancel["params"]["requestId"] == hung["id"]  # the id the upstream knows the request by
        for _ in range(100):  # the session that served the cancelled request is retired, not reused
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the cancelled request's upstream was reused")
        r = await c.post(PATH, json=modern_request("test/echo", request_id=42), headers=modern_headers("test/echo"))
        assert r.status_code == 200 and r.json()["id"] == 42


async def test_concurrent_requests_get_their_own_upstream_and_their_own_notifications(tmp_path: Path) -> None:
    async with running_guard(scripted_config()) as base, client(base) as c:

        async def one(i: int) -> list[dict]:
            body = modern_request("test/notify", {"n": i}, request_id=1)  # same id from every client
            async with c.stream("POST", PATH, json=body, headers=modern_headers("test/notify")) as r:
                return [json.loads(line[6:]) async for line in r.aiter_lines() if line.startswith("data: ")]

        results = await asyncio.gather(*(one(i) for i in range(4)))
    for i, events in enumerate(results):
        assert [e.get("method") for e in events] == ["notifications/message", None]
        assert events[-1]["id"] == 1 and events[-1]["result"]["params"]["n"] == i


async def test_sse_transport_2024_endpoint_event_then_everything_on_the_stream(tmp_path: Path) -> None:
    async with running_guard(scripted_config()) as base, client(base) as c:
        async with c.stream("GET", PATH, headers={"Accept": "text/event-stream"}) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == "event: endpoint"
            endpoint = (await anext(lines))[len("data: "):]
            assert endpoint.startswith(PATH + "?session_id=")
            post = await c.post(endpoint, json={"jsonrpc": "2.0", "id": 3, "method": "test/echo"})
            assert post.status_code == 202
            bad = await c.post(endpoint, content=b"not json", headers={"Content-Type": "application/json"})
            assert bad.status_code == 202  # answered on the stream, as over WebSocket
            seen = []
            async for line in lines:
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                if len(seen) == 2:
                    break
        by_id = {m["id"]: m for m in seen}  # the parse error is immediate, the echo goes upstream and back
        assert by_id[3]["result"]["method"] == "test/echo"
        assert by_id[None]["error"]["code"] == -32700
        gone = await c.post(endpoint, json={"jsonrpc": "2.0", "id": 4, "method": "test/echo"})
        for _ in range(50):
            if gone.status_code == 404:
                break
            await asyncio.sleep(0.1)
            gone = await c.post(endpoint, json={"jsonrpc": "2.0", "id": 4, "method": "test/echo"})
        assert gone.status_code == 404  # closing the stream ended the session

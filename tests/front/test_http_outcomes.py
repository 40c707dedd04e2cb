"""Defined outcomes of the HTTP front door, over real sockets (docs/clients.md, "Streamable HTTP").

Every request gets exactly one answer: an HTTP status and, where there is something to say,
a JSON-RPC error body. The upstream is the scripted stdio server, which records every line it
receives, so each refusal is also shown never to have reached it.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest

from tests.front.helpers import (
    client,
    http,
    legacy_init,
    modern_headers,
    modern_request,
    open_session,
    post_headers,
    scripted_config,
)
from tests.support.guard_server import running_guard

PATH = "/mcp/s"


def received(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


async def test_bad_input_gets_a_status_and_a_jsonrpc_error(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted_config(record, max_message_bytes=4096)) as base, client(base) as c:
        session = await open_session(c, PATH)
        h = post_headers(session)
        cases = [
            (await c.post(PATH, content=b"{not json", headers=h), 400, -32700),
            (await c.post(PATH, content=b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', headers=h), 400, -32600),
            (await c.post(PATH, content=b'{"jsonrpc":"1.0","id":7,"method":"ping"}', headers=h), 400, -32600),
            (await c.post(PATH, content=b"\xff\xfe", headers=h), 400, -32700),
            (await c.post(PATH, content=b"{}", headers={**h, "Content-Type": "text/plain"}), 415, -32600),
            (await c.post(PATH, json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
                          headers={**h, "Accept": "text/html"}), 406, -32600),
            (await c.post(PATH, content=b'{"x":"' + b"a" * 5000 + b'"}', headers=h), 413, -32600),
            (await c.post("/mcp/nope", json=legacy_init(), headers=post_headers()), 404, -32600),
            (await c.put(PATH, json={}), 405, -32600),
            (await c.post(PATH, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
                          headers=post_headers()), 400, -32600),
            (await c.post(PATH, json={"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
                          headers=post_headers("no-such-session")), 404, -32600),
            (await c.post(PATH, json={"jsonrpc": "2.0", "id": 5, "method": "tools/list"},
                          headers={**h, "MCP-Protocol-Version": "1999-01-01"}), 400, -32600),
            (await c.get(PATH, headers={"Mcp-Session-Id": session, "Accept": "application/json"}), 406, -32600),
            (await c.delete(PATH), 400, -32600),
        ]
        for response, status, code in cases:
            assert response.status_code == status, (response.request.method, response.text)
            body = response.json()
            assert body["jsonrpc"] == "2.0" and body["error"]["code"] == code, body
        assert cases[2][0].json()["id"] == 7  # the id is kept when it could be read
        assert cases[0][0].json()["id"] is None
        # The session survived all of it.
        ok = await c.post(PATH, json={"jsonrpc": "2.0", "id": 9, "method": "test/echo"}, headers=h)
        assert ok.status_code == 200 and ok.json()["result"]["method"] == "test/echo"
    methods = [m.get("method") for m in received(record)]
    assert methods == ["initialize", "notifications/initialized", "test/echo"]


async def test_duplicate_in_flight_id_is_refused_without_stealing_the_first_answer(tmp_path: Path) -> None:
    async with running_guard(scripted_config()) as base, client(base) as c:
        session = await open_session(c, PATH)
        h = post_headers(session)
        first = asyncio.create_task(c.post(PATH, json={"jsonrpc": "2.0", "id": 5, "method": "test/slow",
                                                       "params": {"seconds": 1}}, headers=h))
        await asyncio.sleep(0.3)
        second = await c.post(PATH, json={"jsonrpc": "2.0", "id": 5, "method": "test/echo"}, headers=h)
        assert second.status_code == 400 and second.json()["error"]["code"] == -32600
        answer = (await first).json()
        assert answer["id"] == 5 and answer["result"]["method"] == "test/slow"


async def test_stolen_session_id_from_another_host_is_unknown(tmp_path: Path) -> None:
    """Anonymous sessions are bound to the client host; authenticated ones to issuer+subject (test_http_stack)."""
    async with running_guard(scripted_config()) as base, client(base) as c:
        session = await open_session(c, PATH)
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")  # another host, as guard sees it
        async with httpx.AsyncClient(base_url=http(base), transport=transport, timeout=30) as thief:
            stolen = await thief.post(PATH, json={"jsonrpc": "2.0", "id": 1, "method": "test/echo"},
                                      headers=post_headers(session))
            assert stolen.status_code == 404
            assert (await thief.delete(PATH, headers={"Mcp-Session-Id": session})).status_code == 404
        still = await c.post(PATH, json={"jsonrpc": "2.0", "id": 2, "method": "test/echo"},
                             headers=post_headers(session))
        assert still.status_code == 200


async def test_idle_session_expires_and_answers_404(tmp_path: Path) -> None:
    async with running_guard(scripted_config(idle_timeout=0.5)) as base, client(base) as c:
        session = await open_session(c, PATH)
        await asyncio.sleep(2.0)
        late = await c.post(PATH, json={"jsonrpc": "2.0", "id": 1, "method": "test/echo"},
                            headers=post_headers(session))
        assert late.status_code == 404 and late.json()["error"]["data"]["reason"] == "unknown_session"
        assert await open_session(c, PATH) != session  # the client initializes again


async def test_delete_ends_the_session_and_its_upstream_process(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted_config(record)) as base, client(base) as c:
        session = await open_session(c, PATH)
        pid = int(Path(str(record) + ".pid").read_text())
        assert (await c.delete(PATH, headers={"Mcp-Session-Id": session})).status_code == 204
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        gone = await c.post(PATH, json={"jsonrpc": "2.0", "id": 1, "method": "test/echo"},
                            headers=post_headers(session))
        assert gone.status_code == 404


async def test_server_request_rides_the_post_stream_and_its_answer_is_a_202_post(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted_config(record)) as base, client(base) as c:
        session = await open_session(c, PATH)
        h = post_headers(session)
        r = await c.post(PATH, json={"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}, headers=h)
        assert r.status_code == 202 and r.content == b""
        call = {"jsonrpc": "2.0", "id": 8, "method": "test/server_request"}
        async with c.stream("POST", PATH, json=call, headers=h) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = []
            async for line in stream.aiter_lines():
                if not line.startswith("data: "):
                    continue
                message = json.loads(line[6:])
                events.append(message)
                if message.get("method") == "sampling/createMessage":
                    reply = {"jsonrpc": "2.0", "id": message["id"], "result": {"role": "assistant", "model": "m",
                             "content": {"type": "text", "text": "hi"}}}
                    answered = await c.post(PATH, json=reply, headers=h)
                    assert answered.status_code == 202
        assert [e.get("method") for e in events] == ["sampling/createMessage", None]
        assert events[-1]["id"] == 8 and events[-1]["result"]["clientAnswer"]["result"]["content"]["text"] == "hi"
    assert "notifications/roots/list_changed" in [m.get("method") for m in received(record)]


async def test_modern_request_is_served_without_a_session(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted_config(record)) as base, client(base) as c:
        pids = set()
        for i in range(3):
            r = await c.post(PATH, json=modern_request("test/echo", request_id=i), headers=modern_headers("test/echo"))
            assert r.status_code == 200 and r.json()["id"] == i, r.text
            assert "mcp-session-id" not in r.headers
            pids.add(Path(str(record) + ".pid").read_text())
        assert len(pids) == 1  # one warm upstream served the whole sequence: no child per request
        missing = await c.post(PATH, json=modern_request("nope/x"), headers=modern_headers("nope/x"))
        assert missing.status_code == 200  # the scripted upstream answers everything: a normal result
        note = await c.post(PATH, json={"jsonrpc": "2.0", "method": "notifications/cancelled",
                                        "params": {"requestId": 1}},
                            headers=modern_headers("notifications/cancelled"))
        assert note.status_code == 202
    assert [m["method"] for m in received(record)] == ["test/echo"] * 3 + ["nope/x"]  # the notification was dropped


async def test_http_sessions_expire_even_when_idle_timeout_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """An HTTP client can vanish without a connection ending: its session must not hold an upstream forever."""
    from guard.transports import http_sessions

    monkeypatch.setattr(http_sessions, "HTTP_IDLE_FALLBACK", 0.5)
    async with running_guard(scripted_config(idle_timeout=0)) as base, client(base) as c:
        session = await open_session(c, PATH)
        r = await c.post(PATH, json=modern_request("test/echo"), headers=modern_headers("test/echo"))
        assert r.status_code == 200
        await asyncio.sleep(2.5)
        late = await c.post(PATH, json={"jsonrpc": "2.0", "id": 1, "method": "test/echo"},
                            headers=post_headers(session))
        assert late.status_code == 404


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_graceful_shutdown_lets_an_http_request_in_flight_finish(era: str) -> None:
    call: asyncio.Task[httpx.Response] | None = None
    async with running_guard(scripted_config()) as base:
        c = httpx.AsyncClient(base_url=http(base), timeout=30)
        if era == "legacy":
            session = await open_session(c, PATH)
            body = {"jsonrpc": "2.0", "id": 3, "method": "test/slow", "params": {"seconds": 1.0}}
            call = asyncio.create_task(c.post(PATH, json=body, headers=post_headers(session)))
        else:
            body = modern_request("test/slow", {"seconds": 1.0}, request_id=3)
            call = asyncio.create_task(c.post(PATH, json=body, headers=modern_headers("test/slow")))
        await asyncio.sleep(0.3)
    response = await call  # guard drained: the request in flight got its answer before the process ended
    await c.aclose()
    assert response.status_code == 200 and response.json()["result"]["method"] == "test/slow"


async def test_foreign_origin_is_refused_on_an_anonymous_endpoint(tmp_path: Path) -> None:
    """DNS rebinding: a web page elsewhere must not drive an unauthenticated endpoint (403, before anything)."""
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted_config(record)) as base, client(base) as c:
        evil = await c.post(PATH, json=legacy_init(), headers=post_headers(Origin="http://evil.example"))
        assert evil.status_code == 403 and evil.json()["error"]["data"]["reason"] == "origin_not_allowed"
        local = await c.post(PATH, json=legacy_init(), headers=post_headers(Origin="http://localhost:6274"))
        assert local.status_code == 200
    assert [m["method"] for m in received(record)] == ["initialize"]

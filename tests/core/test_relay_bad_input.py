"""The relay's defined outcomes for bad input and upstream failure, over real sockets."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.guard_server import running_guard

SCRIPT = str(Path(__file__).resolve().parent.parent / "support" / "scripted_upstream.py")


def scripted(extra: dict[str, Any] | None = None, **server: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"max_message_bytes": 4096, **server},
        "upstreams": {"s": {"command": sys.executable, "args": [SCRIPT], "terminate_grace": 1.0}},
        "auth": {"anonymous_servers": ["s"]},
    }
    if extra:
        cfg["upstreams"]["s"].update(extra)
    return cfg


async def call(ws: Any, payload: Any) -> dict[str, Any]:
    await ws.send(payload if isinstance(payload, str) else json.dumps(payload))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


def req(rid: Any, method: str = "tools/list", params: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        out["params"] = params
    return out


async def test_relays_request_and_response() -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        reply = await call(ws, req(1, "tools/list", {"cursor": "x"}))
        assert reply == {"jsonrpc": "2.0", "id": 1, "result": {"method": "tools/list", "params": {"cursor": "x"}}}


async def test_not_json_gets_parse_error_and_connection_stays_usable() -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        reply = await call(ws, "{not json")
        assert reply["id"] is None and reply["error"]["code"] == -32700
        assert (await call(ws, req(2)))["id"] == 2


@pytest.mark.parametrize(
    "payload,expected_id",
    [
        ({"jsonrpc": "2.0", "id": 5}, 5),
        ({"jsonrpc": "1.0", "id": 6, "method": "ping"}, 6),
        ({"jsonrpc": "2.0", "id": 7, "method": 42}, 7),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 8, "method": "ping", "params": [1, 2]}, 8),
        ("42", None),
        ('"just a string"', None),
    ],
)
async def test_json_but_not_jsonrpc_gets_invalid_request(payload: Any, expected_id: Any) -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        reply = await call(ws, payload)
        assert reply["error"]["code"] == -32600
        assert reply["id"] == expected_id
        assert (await call(ws, req(99)))["id"] == 99


async def test_batch_is_rejected_and_nothing_forwarded(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    cfg = scripted({"env": {"RECORD": str(record)}})
    async with running_guard(cfg) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        reply = await call(ws, [req(1), req(2)])
        assert reply == {"jsonrpc": "2.0", "id": None,
                         "error": {"code": -32600, "message": reply["error"]["message"]}}
        assert "batch" in reply["error"]["message"]
        await call(ws, req(3, "ping"))
    forwarded = [json.loads(line) for line in record.read_text().splitlines()]
    assert [m["method"] for m in forwarded] == ["ping"]  # under the id guard gave it (see guard.session)


async def test_binary_frame_closes_1003() -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(b"\x00\x01")
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1003


async def test_oversized_message_closes_1009_and_is_not_forwarded(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    cfg = scripted({"env": {"RECORD": str(record)}})
    async with running_guard(cfg) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "tools/call", {"name": "x", "arguments": {"blob": "a" * 5000}})))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert not record.exists() or record.read_text() == ""


async def test_handshake_without_mcp_subprotocol_is_refused_with_reason() -> None:
    async with running_guard(scripted()) as base:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{base}/mcp/s"):
                pass
        assert info.value.response.status_code == 400
        assert b"subprotocol 'mcp' is required" in info.value.response.body


async def test_unknown_upstream_is_404() -> None:
    async with running_guard(scripted()) as base:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{base}/mcp/nope", subprotocols=["mcp"]):
                pass
        assert info.value.response.status_code == 404


async def test_upstream_unreachable_at_connect_gives_clear_close_reason() -> None:
    cfg = scripted()
    cfg["upstreams"]["s"] = {"command": "/nonexistent/definitely-not-here"}
    async with running_guard(cfg) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        assert "upstream unavailable" in info.value.rcvd.reason


async def test_upstream_death_answers_every_pending_request_then_closes_1011() -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req("h1", "test/hang")))
        await ws.send(json.dumps(req("h2", "test/hang")))
        await ws.send(json.dumps(req("d", "test/die")))
        answers: dict[Any, Any] = {}
        with pytest.raises(ConnectionClosed) as info:
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                answers[msg["id"]] = msg
        assert set(answers) == {"h1", "h2", "d"}
        assert all(a["error"]["code"] == -31004 for a in answers.values())
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        assert "upstream" in info.value.rcvd.reason


async def test_duplicate_in_flight_id_is_rejected_without_breaking_the_first() -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "test/hang")))
        reply = await call(ws, req(1, "ping"))
        assert reply["id"] == 1 and reply["error"]["code"] == -32600


async def test_in_flight_limit() -> None:
    async with running_guard(scripted(max_in_flight=2)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "test/hang")))
        await ws.send(json.dumps(req(2, "test/hang")))
        reply = await call(ws, req(3, "ping"))
        assert reply["id"] == 3 and reply["error"]["code"] == -31007


async def test_unsolicited_upstream_response_is_dropped_and_garbage_ignored() -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        reply = await call(ws, req(1, "test/unsolicited"))
        assert reply["id"] == 1
        reply = await call(ws, req(2, "test/garbage"))
        assert reply["id"] == 2
        assert (await call(ws, req(3, "ping")))["id"] == 3


async def test_server_to_client_request_round_trips() -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "test/server_request")))
        server_req = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert server_req["method"] == "sampling/createMessage"
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": server_req["id"], "result": {"ok": True}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["id"] == 1
        assert reply["result"]["clientAnswer"]["result"] == {"ok": True}


async def test_client_response_to_unknown_server_request_is_dropped(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted({"env": {"RECORD": str(record)}})) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": "forged", "result": {}}))
        await call(ws, req(1, "ping"))
    forwarded = [json.loads(line) for line in record.read_text().splitlines()]
    assert [m.get("method") for m in forwarded] == ["ping"]


async def test_notifications_flow_to_client() -> None:
    async with running_guard(scripted()) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "test/notify")))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        second = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["method"] == "notifications/message"
        assert second["id"] == 1


async def test_stdio_child_gets_minimal_environment_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARD_SECRET_IN_PARENT", "s3cr3t")
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted({"env": {"RECORD": str(record)}})) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"],
                    additional_headers={"Authorization": "Bearer client-token-xyz"}) as ws:
        await call(ws, req(1, "ping"))
    env = json.loads((tmp_path / "rec.jsonl.env").read_text())
    assert "GUARD_SECRET_IN_PARENT" not in env
    assert "client-token-xyz" not in json.dumps(env)
    assert "client-token-xyz" not in record.read_text()


async def test_stdio_child_is_terminated_when_session_ends(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted({"env": {"RECORD": str(record)}})) as base:
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
            await call(ws, req(1, "ping"))
        env = json.loads((tmp_path / "rec.jsonl.env").read_text())
        assert env  # child started
        await asyncio.sleep(0.5)
    import subprocess

    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(record) not in out

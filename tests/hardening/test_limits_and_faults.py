"""Upstream faults and hostile clients, with real processes and sockets on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.core.test_relay_bad_input import call, req, scripted
from tests.support.guard_server import free_port, guard_process, rss_of, running_guard

pytestmark = pytest.mark.slow


def rss_bytes() -> int:
    """RSS of this process, which runs guard in its event loop."""
    return rss_of(os.getpid())


async def wait_for_file(path: Path, timeout: float = 10) -> str:
    for _ in range(int(timeout * 20)):
        if path.exists() and path.read_text():
            return path.read_text()
        await asyncio.sleep(0.05)
    raise TimeoutError(path)


async def test_upstream_killed_mid_call_gives_error_not_hang(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    async with running_guard(scripted({"env": {"RECORD": str(record)}})) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "test/hang")))
        pid = int(await wait_for_file(Path(str(record) + ".pid")))
        await wait_for_file(record)
        os.kill(pid, signal.SIGKILL)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["id"] == 1 and reply["error"]["code"] == -31004
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011


async def test_upstream_hang_times_out_opens_breaker_and_recovers(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    cfg = scripted({"env": {"RECORD": str(record)}, "call_timeout": 0.5, "breaker_failures": 2,
                    "breaker_reset": 1.0})
    async with running_guard(cfg) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"], local_addr=("127.0.0.2", 0)) as other:
        # Two anonymous principals (one per address): one alone cannot open the breaker.
        first = await call(ws, req(1, "test/hang"))
        second = await call(other, req(2, "test/hang"))
        assert first["error"]["code"] == -31005 and second["error"]["code"] == -31005
        fast = await call(ws, req(3, "ping"))
        assert fast["error"]["code"] == -31013 and fast["error"]["data"] == {"reason": "circuit_open"}
        await asyncio.sleep(1.1)
        probe = await call(ws, req(4, "ping"))
        assert probe["result"]["method"] == "ping"
        assert (await call(ws, req(5, "ping")))["result"]["method"] == "ping"
    forwarded = [json.loads(line) for line in record.read_text().splitlines()]
    hung = [m["id"] for m in forwarded if m.get("method") == "test/hang"]  # one child per session
    cancels = [m["params"]["requestId"] for m in forwarded if m.get("method") == "notifications/cancelled"]
    assert sorted(cancels) == sorted(hung) and len(hung) == 2
    assert [m.get("method") for m in forwarded].count("ping") == 2  # request 3 never reached the upstream


async def test_slow_reader_keeps_guard_memory_bounded() -> None:
    async with running_guard(scripted()) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"], max_queue=4) as ws:
        before = rss_bytes()
        # 150 MB of notifications toward a client that does not read.
        await ws.send(json.dumps(req(1, "test/flood", {"count": 3000, "size": 50_000})))
        await asyncio.sleep(3)
        grown = rss_bytes() - before
        assert grown < 60 * 1024 * 1024, f"guard buffered {grown / 1e6:.0f} MB for a slow reader"
        # The session still works once the client reads again.
        seen = 0
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg.get("id") == 1:
                break
            seen += 1
        assert seen == 3000


async def test_compression_bomb_is_closed_1009() -> None:
    async with running_guard(scripted(per_message_deflate=True)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"], compression="deflate", max_size=None) as ws:
        before = rss_bytes()
        bomb = json.dumps(req(1, "tools/call", {"name": "x", "arguments": {"a": "A" * (20 * 1024 * 1024)}}))
        await ws.send(bomb)
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert rss_bytes() - before < 100 * 1024 * 1024


async def test_slowloris_handshakes_do_not_block_new_clients() -> None:
    cfg = scripted(handshake_timeout=1.0)
    async with running_guard(cfg) as base:
        port = int(base.rsplit(":", 1)[1])
        slow: list[socket.socket] = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /mcp/s HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            slow.append(s)
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
            assert (await call(ws, req(1, "ping")))["id"] == 1
        await asyncio.sleep(1.5)
        closed = 0
        for s in slow:
            s.settimeout(2)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except OSError:
                closed += 1
            s.close()
        assert closed == 200


async def test_rate_limit_per_principal() -> None:
    async with running_guard(scripted(rate_limit=0.5, rate_burst=2)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        replies = [await call(ws, req(i, "ping")) for i in range(3)]
        assert "result" in replies[0] and "result" in replies[1]
        assert replies[2]["error"]["code"] == -31006


async def test_connection_cap_per_principal_and_global() -> None:
    async with running_guard(scripted(max_connections_per_principal=1)) as base:
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
            await call(ws, req(1, "ping"))
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"{base}/mcp/s", subprotocols=["mcp"]):
                    pass
            assert info.value.response.status_code == 429
        await asyncio.sleep(0.3)
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:  # slot released
            await call(ws, req(2, "ping"))
    async with running_guard(scripted(max_connections=1)) as base:
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
            await call(ws, req(1, "ping"))
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"{base}/mcp/s", subprotocols=["mcp"]):
                    pass
            assert info.value.response.status_code == 503


async def test_idle_session_is_closed_1001() -> None:
    async with running_guard(scripted(idle_timeout=0.4)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await call(ws, req(1, "ping"))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert info.value.rcvd.reason == "idle timeout"


async def test_request_in_flight_is_not_idle() -> None:
    async with running_guard(scripted(idle_timeout=0.4)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        reply = await call(ws, req(1, "test/slow", {"seconds": 1.2}))
        assert reply["id"] == 1 and "result" in reply


def write_config(tmp_path: Path, extra_server: str = "") -> Path:
    script = Path(__file__).resolve().parent.parent / "support" / "scripted_upstream.py"
    cfg = tmp_path / "guard.toml"
    cfg.write_text(
        f"[server]\nhost = \"127.0.0.1\"\n{extra_server}\n"
        f"[upstreams.s]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(script))}]\n"
        "[auth]\nanonymous_servers = [\"s\"]\n"
    )
    return cfg


async def test_sigterm_drains_in_flight_calls_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    async with guard_process(write_config(tmp_path, "drain_timeout = 10"), port) as proc:
        async with connect(f"ws://127.0.0.1:{port}/mcp/s", subprotocols=["mcp"]) as ws:
            await ws.send(json.dumps(req(1, "test/slow", {"seconds": 1.5})))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["id"] == 1 and "result" in reply  # the in-flight call finished
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code in (1001, 1012)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_sigterm_refuses_new_requests_while_draining(tmp_path: Path) -> None:
    port = free_port()
    async with guard_process(write_config(tmp_path, "drain_timeout = 10"), port) as proc:
        async with connect(f"ws://127.0.0.1:{port}/mcp/s", subprotocols=["mcp"]) as ws:
            await ws.send(json.dumps(req(1, "test/slow", {"seconds": 1.5})))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            await ws.send(json.dumps(req(2, "ping")))
            answers = {}
            with pytest.raises(ConnectionClosed):
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    answers[msg["id"]] = msg
            assert "result" in answers[1]
            assert answers[2]["error"]["code"] == -31012
        assert await asyncio.wait_for(proc.wait(), 20) == 0


def test_file_descriptor_headroom() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= 1024

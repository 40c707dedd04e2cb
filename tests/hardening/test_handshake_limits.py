"""Oversized handshakes are answered and closed; refusals log one info line each (issue 12, items 12-13).

A real ``guard serve`` process on loopback, raw sockets and the websockets client:

* a request head with a line past the limit gets ``431`` (``414`` for the request line) and a
  closed socket at once, well within ``handshake_timeout``, even when it trickles in; 100 such
  requests leave no file descriptor behind in guard;
* bearer tokens up to ``auth.max_token_bytes`` fit the head limit and are authenticated; larger
  ones are refused by authentication (401 ``token_too_large``), far larger heads with 431;
* every refused handshake or frame is logged once, at info, with its reason code; nothing a
  client can send produces an ERROR line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from tests.core.test_relay_bad_input import SCRIPT, call, req
from tests.support.guard_server import free_port, guard_process
from tests.support.tokens import AUDIENCE, ISSUER, SECRET, token

pytestmark = pytest.mark.slow

HANDSHAKE_TIMEOUT = 2.0


def write_config(tmp_path: Path, max_token_bytes: int = 8192) -> Path:
    cfg = tmp_path / "guard.toml"
    upstream = f"command = {json.dumps(sys.executable)}\nargs = [{json.dumps(SCRIPT)}]\nterminate_grace = 1.0\n"
    cfg.write_text(
        f'[server]\nhost = "127.0.0.1"\nhandshake_timeout = {HANDSHAKE_TIMEOUT}\n\n'
        f"[upstreams.s]\n{upstream}\n[upstreams.open]\n{upstream}\n"
        f'[auth]\naudience = "{AUDIENCE}"\nanonymous_servers = ["open"]\nmax_token_bytes = {max_token_bytes}\n\n'
        f'[[auth.issuers]]\nissuer = "{ISSUER}"\nalgorithms = ["HS256"]\nhmac_secret = "{SECRET}"\n')
    return cfg


@contextlib.asynccontextmanager
async def guard(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    port = free_port()
    async with guard_process(write_config(tmp_path, **kw), port) as proc:
        yield port, proc


def upgrade(path: str = "/mcp/s", extra: bytes = b"") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: mcp\r\n").encode() + extra + b"\r\n"


def exchange(port: int, request: bytes, chunk: int = 1 << 20, pause: float = 0.0) -> tuple[bytes, bool, float]:
    """Send ``request`` (in chunks, with pauses), then read until EOF: (answer, closed, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(HANDSHAKE_TIMEOUT + 3)
        with contextlib.suppress(OSError):  # guard may answer and half-close before everything is sent
            for i in range(0, len(request), chunk):
                s.sendall(request[i:i + chunk])
                if pause:
                    time.sleep(pause)
        answer = b""
        try:
            while data := s.recv(65536):
                answer += data
            closed = True
        except TimeoutError:
            closed = False
        except ConnectionResetError:
            closed = True
    return answer, closed, time.monotonic() - started


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("head,status", [
    (upgrade(extra=b"Authorization: Bearer " + b"a" * 70_000 + b"\r\n"), 431),
    (upgrade(extra=b"X-Padding: " + b"p" * 9_000 + b"\r\n"), 431),
    (upgrade(extra=b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 4000) for i in range(12))), 431),
    (upgrade(path="/mcp/s?" + "q" * 9_000), 414),
], ids=["70k-token", "9k-header", "many-headers", "9k-uri"])
async def test_oversized_header_is_answered_and_closed_within_the_handshake_deadline(
        tmp_path: Path, head: bytes, status: int) -> None:
    async with guard(tmp_path) as (port, _):
        loop = asyncio.get_running_loop()
        for chunk, pause in ((1 << 20, 0.0), (1400, 0.005)):  # all at once, and trickled in
            answer, closed, seconds = await loop.run_in_executor(None, exchange, port, head, chunk, pause)
            assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:80]
            assert closed and seconds < HANDSHAKE_TIMEOUT


async def test_oversized_headers_pin_no_file_descriptors(tmp_path: Path) -> None:
    head = upgrade(extra=b"Authorization: Bearer " + b"a" * 20_000 + b"\r\n")
    async with guard(tmp_path) as (port, proc):
        loop = asyncio.get_running_loop()
        assert "result" in await _ping(port)  # warm: the first session's child and its pipes came and went
        await asyncio.sleep(1.0)
        before = open_fds(proc.pid)
        results = await asyncio.gather(*(loop.run_in_executor(None, exchange, port, head) for _ in range(100)))
        assert all(answer.startswith(b"HTTP/1.1 431 ") and closed for answer, closed, _ in results)
        for _ in range(40):  # within the handshake deadline every socket is gone
            if open_fds(proc.pid) <= before:
                break
            await asyncio.sleep(0.1)
        assert open_fds(proc.pid) <= before, (before, open_fds(proc.pid))
        assert "result" in await _ping(port)


async def _ping(port: int) -> dict[str, Any]:
    async with connect(f"ws://127.0.0.1:{port}/mcp/open", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
        return await call(ws, req(1, "ping"))


def padded_token(size: int) -> str:
    """A valid token of exactly ``size`` bytes (a padding claim makes up the length)."""
    base = len(token("alice", pad=""))
    pad = (size - base) * 3 // 4
    for _ in range(8):
        tok = token("alice", pad="p" * pad)
        if len(tok) == size:
            return tok
        pad += (size - len(tok)) * 3 // 4 or (1 if len(tok) < size else -1)
    raise AssertionError("could not size the token")


@pytest.mark.parametrize("max_token_bytes", [8192, 16384])
async def test_tokens_up_to_max_token_bytes_are_authenticated(tmp_path: Path, max_token_bytes: int) -> None:
    async with guard(tmp_path, max_token_bytes=max_token_bytes) as (port, _):
        url = f"ws://127.0.0.1:{port}/mcp/s"
        big = padded_token(max_token_bytes)
        async with connect(url, subprotocols=["mcp"], additional_headers={"Authorization": f"Bearer {big}"}) as ws:
            assert "result" in await call(ws, req(1, "ping"))
        for size, status in ((max_token_bytes + 40, 401), (max_token_bytes + 2000, 431)):
            # Past the limit: refused by authentication (token_too_large), or past the head limit: 431.
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, subprotocols=["mcp"],
                                   additional_headers={"Authorization": f"Bearer {padded_token(size)}"}):
                    pass
            assert info.value.response.status_code == status, size


async def test_refusals_are_logged_once_at_info_with_the_reason_code(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with guard(tmp_path) as (port, proc):
        url = f"ws://127.0.0.1:{port}"
        for path, headers, subprotocols in (("/mcp/nope", {}, ["mcp"]), ("/mcp/s", {}, None),
                                            ("/mcp/s", {}, ["mcp"])):
            with pytest.raises(InvalidStatus):
                async with connect(url + path, subprotocols=subprotocols, additional_headers=headers):
                    pass
        await loop.run_in_executor(None, exchange, port, upgrade(extra=b"X: " + b"x" * 9000 + b"\r\n"))
        no_key = upgrade().replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b"")
        answer, _, _ = await loop.run_in_executor(None, exchange, port, no_key)
        assert answer.startswith(b"HTTP/1.1 400 ")
        slow, _, seconds = await loop.run_in_executor(None, exchange, port, b"GET /mcp/s HTTP/1.1\r\n")
        assert slow == b"" and seconds >= HANDSHAKE_TIMEOUT - 0.5
        async with connect(url + "/mcp/open", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
            ws.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe not utf-8"))
            ws.send_data()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1007
        await asyncio.sleep(0.5)
        proc.terminate()
        assert proc.stderr is not None
        lines = [json.loads(line) for line in (await proc.stderr.read()).decode().splitlines() if line.startswith("{")]
    assert not [entry for entry in lines if entry["level"] in ("error", "critical")], lines
    refusals = [entry["message"] for entry in lines if "refused" in entry["message"]]
    for code in ("unknown_upstream (404)", "subprotocol_required (400)", "missing_token (401)",
                 "header_too_large (431)", "invalid_handshake (400", "handshake_timeout", "invalid_utf8"):
        found = [m for m in refusals if code in m]
        assert len(found) == 1, (code, refusals)
    assert all(entry["level"] == "info" for entry in lines if "refused" in entry["message"])
    assert len(refusals) == 7, refusals
    noise = [entry["message"] for entry in lines
             if "connection rejected" in entry["message"] or ('"WebSocket /mcp' in entry["message"]
             and "[accepted]" not in entry["message"])]
    assert noise == []

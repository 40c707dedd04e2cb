"""End to end: authentication through a real guard on loopback, with real clients and upstreams.

* a valid dev token connects with the official Python SDK 2.x client
  (``mcp.Client`` over :func:`guard.client.websocket_client`);
* every failure is refused *before* the upgrade with the right HTTP status
  (a plain ``websockets`` client sees the status and headers);
* the client's token never reaches an upstream: a stdio upstream records its
  environment and every frame, a Streamable HTTP upstream records every header and body;
* a token that expires mid-session gets ``-31003`` and a 1008 close.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from mcp import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from guard import devkeys
from guard.auth.cli import mint_dev_token
from guard.auth.logfilter import CredentialRedactingFilter
from guard.client import websocket_client
from guard.config import parse
from guard.jsonrpc import ErrorCode
from guard.runtime import build_runtime
from tests.auth.helpers import b64, hs256_with_secret, raw_token
from tests.support.guard_server import free_socket, running_runtime

pytestmark = pytest.mark.e2e

AUD = "https://guard.test"
ISS = "guard-e2e"
RECORDER = Path(__file__).parent / "upstreams" / "recording_stdio.py"


@pytest.fixture(scope="module")
def dev_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[devkeys.DevSigningKey, Path]:
    directory = tmp_path_factory.mktemp("keys")
    devkeys.generate_dev_keys(directory)
    return devkeys.load_dev_signing_key(directory), directory / devkeys.AUTH_JWKS


def mint(dev_key: tuple[devkeys.DevSigningKey, Path], ttl: int = 300, **kw: Any) -> str:
    key, _ = dev_key
    kw.setdefault("audience", (AUD,))
    return mint_dev_token(key, subject="alice", roles=("analyst",), ttl=ttl, issuer=ISS, **kw)


def config(jwks: Path, upstreams: dict[str, Any], **auth: Any) -> dict[str, Any]:
    return {
        "upstreams": upstreams,
        "auth": {"audience": AUD, "issuers": [{"issuer": ISS, "algorithms": ["ES256"], "public_keys": [str(jwks)]}],
                 **auth},
    }


@contextlib.asynccontextmanager
async def guard(cfg: dict[str, Any]) -> AsyncIterator[str]:
    async with running_runtime(build_runtime(parse(cfg))) as base:
        yield base


def demo() -> dict[str, Any]:
    return {"demo": {"command": sys.executable, "args": ["-m", "guard.demo"]}}


async def refused(url: str, headers: dict[str, str]) -> Any:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, subprotocols=["mcp"], additional_headers=headers, open_timeout=10):  # type: ignore[list-item]
            pass
    return info.value.response


# --- a valid token works with the official SDK client ----------------------------------------

async def test_valid_token_connects_with_the_official_sdk_client(dev_key: Any) -> None:
    async with guard(config(dev_key[1], demo())) as base:
        transport = websocket_client(f"{base}/mcp/demo", headers={"Authorization": f"Bearer {mint(dev_key)}"})
        async with Client(transport, mode="legacy") as client:
            tools = await client.list_tools()
            result = await client.call_tool("echo", {"text": "hello through guard"})
    assert "echo" in {tool.name for tool in tools.tools}
    assert "hello through guard" in json.dumps(result.model_dump(mode="json"))


# --- every failure is refused before the upgrade ---------------------------------------------

def failures(dev_key: tuple[devkeys.DevSigningKey, Path]) -> dict[str, tuple[dict[str, str], int, str | None]]:
    key, jwks_path = dev_key
    public_pem = b"".join(jwks_path.read_bytes().split())  # any attacker-known public material will do
    claims = {"iss": ISS, "sub": "mallory", "aud": AUD, "exp": int(time.time()) + 300}
    unsigned = raw_token({"alg": "none", "kid": key.kid}, claims).rsplit(".", 1)[0] + "."
    confused = hs256_with_secret(public_pem, {"alg": "HS256"}, claims)
    return {
        "missing": ({}, 401, None),
        "basic_scheme": ({"Authorization": "Basic YTpi"}, 401, None),
        "expired": ({"Authorization": f"Bearer {mint(dev_key, ttl=1, clock=lambda: time.time() - 120)}"},
                    401, "invalid_token"),
        "wrong_audience": ({"Authorization": f"Bearer {mint(dev_key, audience=('https://elsewhere',))}"},
                           401, "invalid_token"),
        "alg_none": ({"Authorization": "Bearer " + unsigned}, 401, "invalid_token"),
        "hs256_with_public_key": ({"Authorization": "Bearer " + confused}, 401, "invalid_token"),
        "forged_signature": ({"Authorization": "Bearer " + mint(dev_key).rsplit(".", 1)[0] + "." + b64(b"x" * 64)},
                             401, "invalid_token"),
        "garbage": ({"Authorization": "Bearer not-a-jwt"}, 401, "invalid_token"),
        "oversized": ({"Authorization": "Bearer " + "A" * 5000}, 401, "invalid_token"),  # max_token_bytes 4096
    }


@pytest.mark.parametrize("case", [
    "missing", "basic_scheme", "expired", "wrong_audience", "alg_none", "hs256_with_public_key",
    "forged_signature", "garbage", "oversized",
])
async def test_each_failure_gets_401_before_the_upgrade(dev_key: Any, case: str) -> None:
    headers, status, error = failures(dev_key)[case]
    async with guard(config(dev_key[1], demo(), max_token_bytes=4096)) as base:
        response = await refused(f"{base}/mcp/demo", headers)
    assert response.status_code == status
    challenge = response.headers["WWW-Authenticate"]
    assert f'resource_metadata="http://127.0.0.1:{base.rsplit(":", 1)[1]}/.well-known/' in challenge
    assert ("error=" in challenge) == (error is not None)
    if error is not None:
        assert f'error="{error}"' in challenge


async def test_token_in_query_string_is_refused_before_the_upgrade(dev_key: Any) -> None:
    token = mint(dev_key)
    async with guard(config(dev_key[1], demo())) as base:
        response = await refused(f"{base}/mcp/demo?access_token={token}", {})
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


async def test_disallowed_origin_is_refused_with_403_before_the_upgrade(dev_key: Any) -> None:
    cfg = config(dev_key[1], demo(), allowed_origins=["https://app.guard.test"])
    headers = {"Authorization": f"Bearer {mint(dev_key)}", "Origin": "https://evil.test"}
    async with guard(cfg) as base:
        response = await refused(f"{base}/mcp/demo", headers)
    assert response.status_code == 403


async def raw_handshake(base: str, path: str, header_lines: list[str]) -> tuple[int, bytes]:
    """Send a WebSocket upgrade request byte for byte (duplicates as written); the status and raw answer."""
    host, port = base.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Protocol: mcp", *header_lines]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer


async def test_two_authorization_headers_are_refused_before_the_upgrade(dev_key: Any) -> None:
    """A front proxy reading the first Authorization and guard the last would see two different users:
    a request with two is refused (400 invalid_request), whichever of the two is valid."""
    alice = mint(dev_key)
    bob = mint_dev_token(dev_key[0], subject="bob", roles=("admin",), ttl=300, issuer=ISS, audience=(AUD,))
    async with guard(config(dev_key[1], demo())) as base:
        status, answer = await raw_handshake(base, "/mcp/demo", [f"Authorization: Bearer {alice}",
                                                                  f"Authorization: Bearer {bob}"])
        assert status == 400 and b"101 Switching" not in answer
        assert b'error="invalid_request"' in answer
        status, _ = await raw_handshake(base, "/mcp/demo", [f"Authorization: Bearer {alice}",
                                                             "authorization: Basic YTpi"])
        assert status == 400
        status, _ = await raw_handshake(base, "/mcp/demo", [f"Authorization: Bearer {alice}",
                                                             "Origin: http://127.0.0.1", "Origin: https://evil.test"])
        assert status == 400
        status, answer = await raw_handshake(base, "/mcp/demo", [f"Authorization: Bearer {alice}"])
        assert status == 101, answer  # one header: the handshake goes through


async def test_rfc9728_metadata_is_served_and_matches_the_challenge(dev_key: Any) -> None:
    async with guard(config(dev_key[1], demo())) as base:
        response = await refused(f"{base}/mcp/demo", {})
        url = response.headers["WWW-Authenticate"].split('resource_metadata="')[1].split('"')[0]
        async with httpx.AsyncClient() as http:
            doc = (await http.get(url)).json()
    http_base = base.replace("ws://", "http://")
    assert doc == {"resource": f"{http_base}/mcp/demo", "authorization_servers": [ISS],
                   "bearer_methods_supported": ["header"]}


# --- no token passthrough --------------------------------------------------------------------

def secrets_of(token: str) -> list[str]:
    header, payload, signature = token.split(".")
    return [token, header, payload, signature]


async def test_token_never_reaches_a_stdio_upstream(
    dev_key: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = tmp_path / "record.jsonl"
    token = mint(dev_key)
    upstream = {"rec": {"command": sys.executable, "args": [str(RECORDER), str(record)]}}
    caplog.set_level(logging.DEBUG)
    async with guard(config(dev_key[1], upstream)) as base:
        transport = websocket_client(f"{base}/mcp/rec", headers={"Authorization": f"Bearer {token}",
                                                                   "X-Client-Secret": "client-side-only"})
        async with Client(transport, mode="legacy") as client:
            result = await client.call_tool("echo", {"text": "payload"})
    assert "payload" in json.dumps(result.model_dump(mode="json"))
    text = record.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert any("frame" in e and "tools/call" in e["frame"] for e in entries)
    env = entries[0]["env"]
    for secret in [*secrets_of(token), "client-side-only"]:
        assert secret not in text
        assert all(secret not in value for value in env.values())
    assert not any(name.upper() in ("AUTHORIZATION", "HTTP_AUTHORIZATION") for name in env)
    server_side = [r for r in caplog.records if not r.name.startswith("websockets.client")]  # the test's client
    assert any("GET /mcp/rec" in r.getMessage() for r in server_side)  # the handshake was logged at debug...
    for record in server_side:
        CredentialRedactingFilter().filter(record)  # ...as guard's log handler sees it
        for secret in secrets_of(token):
            assert secret not in record.getMessage()


@contextlib.asynccontextmanager
async def recording_http_upstream() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A Streamable HTTP MCP server (JSON replies) on loopback recording every request."""
    seen: list[dict[str, Any]] = []

    async def mcp_endpoint(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        seen.append({"method": request.method, "headers": dict(request.headers), "body": body})
        if request.method != "POST":
            return Response(status_code=405)
        msg = json.loads(body)
        if "id" not in msg:
            return Response(status_code=202)
        method, params = msg.get("method"), msg.get("params") or {}
        if method == "initialize":
            result: dict[str, Any] = {"protocolVersion": params.get("protocolVersion"), "capabilities": {"tools": {}},
                                      "serverInfo": {"name": "recorder", "version": "1.0"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}
        elif method == "tools/call":
            result = {"content": [{"type": "text", "text": json.dumps(params.get("arguments"))}]}
        else:
            result = {}
        return JSONResponse({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    app = Starlette(routes=[Route("/mcp", mcp_endpoint, methods=["GET", "POST", "DELETE"])])
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", seen
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_token_never_reaches_a_streamable_http_upstream(dev_key: Any) -> None:
    token = mint(dev_key)
    async with recording_http_upstream() as (url, seen):
        upstream = {"rec": {"url": url, "headers": {"Authorization": "Bearer upstream-own-credential"}}}
        async with guard(config(dev_key[1], upstream)) as base:
            transport = websocket_client(f"{base}/mcp/rec", headers={"Authorization": f"Bearer {token}",
                                                                       "Cookie": "session=client-cookie"})
            async with Client(transport, mode="legacy") as client:
                await client.call_tool("echo", {"text": "payload"})
    posts = [r for r in seen if r["method"] == "POST"]
    assert any("tools/call" in r["body"] for r in posts)
    for r in seen:
        assert r["headers"].get("authorization") == "Bearer upstream-own-credential"
        assert "cookie" not in r["headers"]
        flat = json.dumps(r)
        for secret in [*secrets_of(token), "client-cookie"]:
            assert secret not in flat


# --- expiry mid-session ----------------------------------------------------------------------

async def test_token_expiring_mid_session_gets_unauthenticated_and_close_1008(
    dev_key: Any, tmp_path: Path
) -> None:
    upstream = {"rec": {"command": sys.executable, "args": [str(RECORDER), str(tmp_path / "r.jsonl")]}}
    token = mint(dev_key, ttl=2)
    async with guard(config(dev_key[1], upstream, leeway=0)) as base:
        async with connect(f"{base}/mcp/rec", subprotocols=["mcp"],  # type: ignore[list-item]
                           additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert "result" in first
            exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]
            await asyncio.sleep(max(0.0, exp - time.time()) + 0.2)
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            second = json.loads(await asyncio.wait_for(ws.recv(), 10))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
    assert second["id"] == 2 and second["error"]["code"] == ErrorCode.UNAUTHENTICATED
    assert ws.close_code == 1008 and ws.close_reason == "token expired"
    frames = [json.loads(line).get("frame", "") for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sum('"id":2' in f.replace(" ", "") for f in frames) == 0  # the expired request never went upstream


def test_guard_log_handler_redacts_credentials() -> None:
    from guard import logs

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.configure("debug")
        filters = [f for handler in root.handlers for f in handler.filters]
        assert any(isinstance(f, CredentialRedactingFilter) for f in filters)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


async def test_silent_session_is_closed_1008_when_its_token_expires(dev_key: Any, tmp_path: Path) -> None:
    upstream = {"rec": {"command": sys.executable, "args": [str(RECORDER), str(tmp_path / "r.jsonl")]}}
    token = mint(dev_key, ttl=1)
    async with guard(config(dev_key[1], upstream, leeway=0)) as base:
        async with connect(f"{base}/mcp/rec", subprotocols=["mcp"],  # type: ignore[list-item]
                           additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1008 and ws.close_reason == "token expired"

"""The whole stack over Streamable HTTP, as ``guard demo`` configures it: JWT, policy, PII, audit.

With the official SDK 2.x client speaking Streamable HTTP (both eras) and a recording demo
upstream: a denied call never reaches the upstream, the model sees PII tokens, a principal
allowed to reveal gets the original restored upstream, every call leaves audit records, the
log verifies intact and holds no personal data or tokens. Sessions are bound to principals:
an id presented with another principal's token is refused (404, like an unknown id).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from guard.audit.verify import verify
from guard.auth.cli import mint_dev_token
from guard.crypto.signing import load_verify_key
from guard.devkeys import load_dev_signing_key
from tests.e2e.test_full_stack import EMAIL, sent_to, stack
from tests.front.helpers import http, legacy_init, post_headers
from tests.support.guard_server import running_runtime

pytestmark = pytest.mark.e2e
MODES = ["legacy", "2026-07-28"]


@contextlib.asynccontextmanager
async def bearer(url: str, token: str) -> AsyncIterator[Any]:
    """``streamable_http_client`` with the token in the Authorization header of every request."""
    timeout = httpx2.Timeout(30, read=300)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=timeout) as hc:
        async with streamable_http_client(url, http_client=hc) as streams:
            yield streams


def audit_records(dev: Path) -> list[dict[str, Any]]:
    lines = "".join(p.read_text() for p in sorted((dev / "audit").iterdir()) if p.suffix == ".jsonl")
    return [json.loads(line) for line in lines.splitlines() if line.strip()]


@pytest.mark.parametrize("mode", MODES)
async def test_policy_pii_and_audit_apply_over_streamable_http(tmp_path: Path, mode: str) -> None:
    record = tmp_path / "record.jsonl"
    runtime, tokens = stack(tmp_path, record)
    async with running_runtime(runtime) as base:
        url = f"{http(base)}/mcp/demo"
        async with Client(bearer(url, tokens["bob"]), mode=mode) as bob:
            found = await bob.call_tool("find_customer", {"query": "Johnson"})
            assert EMAIL not in json.dumps(found.model_dump(mode="json")) and "4111-1111" not in found.content[0].text  # type: ignore[union-attr]
            token = found.structured_content["customers"][0]["email"]  # type: ignore[index]
            assert token.startswith("<pii:EMAIL_ADDRESS:")
            sent = await bob.call_tool("send_message", {"to": token, "body": "Your renewal"})
            assert not sent.is_error
        async with Client(bearer(url, tokens["alice"]), mode=mode) as alice:
            tools = {t.name for t in (await alice.list_tools()).tools}
            assert "delete_customer" not in tools
            with pytest.raises(MCPError) as info:
                await alice.call_tool("delete_customer", {"customer_id": "C002"})
            assert info.value.error.code == -31001
    assert sent_to(record) == [EMAIL]  # bob may reveal: the upstream got the address back
    assert all(r.get("name") != "delete_customer" for r in record_lines(record))
    dev = tmp_path / "dev"
    key = load_verify_key(dev / "keys" / "audit-signing-key.pub.pem")
    assert verify([dev / "audit"], keys=[key]).status == "intact"
    records = audit_records(dev)
    calls = [r for r in records if r.get("guard", {}).get("rpc", {}).get("method") == "tools/call"
             and r["guard"].get("direction") == "client_to_server"]
    assert {(c["guard"]["target"]["name"], c["guard"]["verdict"]["action"]) for c in calls} == {
        ("find_customer", "continue"), ("send_message", "continue"), ("delete_customer", "reject")}
    dumped = json.dumps(records)
    for secret in (EMAIL, token, *tokens.values(), "4111-1111-1111-1111"):
        assert secret not in dumped


def record_lines(record: Path) -> list[dict[str, Any]]:
    from guard.demo.server import read_record

    return read_record(record)


async def test_session_id_with_another_principals_token_is_refused(tmp_path: Path) -> None:
    runtime, tokens = stack(tmp_path, tmp_path / "record.jsonl")
    async with running_runtime(runtime) as base, httpx.AsyncClient(base_url=http(base), timeout=30) as c:
        as_bob = {"Authorization": f"Bearer {tokens['bob']}"}
        as_carol = {"Authorization": f"Bearer {tokens['carol']}"}
        r = await c.post("/mcp/demo", json=legacy_init(), headers={**post_headers(), **as_bob})
        session = r.headers["mcp-session-id"]
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "list_customers", "arguments": {}}}
        stolen = await c.post("/mcp/demo", json=call, headers={**post_headers(session), **as_carol})
        assert stolen.status_code == 404 and stolen.json()["error"]["data"]["reason"] == "unknown_session"
        for method in ("GET", "DELETE"):
            r = await c.request(method, "/mcp/demo", headers={"Mcp-Session-Id": session, **as_carol,
                                                               "Accept": "text/event-stream"})
            assert r.status_code == 404
        # The same subject with a fresh token (a refresh) keeps the session.
        fresh = mint_dev_token(load_dev_signing_key(tmp_path / "dev" / "keys"), subject="bob", roles=["support"],
                               ttl=600, audience=["guard-dev"], issuer="guard-dev", extra={})
        mine = await c.post("/mcp/demo", json=call,
                            headers={**post_headers(session), "Authorization": f"Bearer {fresh}"})
        assert mine.status_code == 200 and "result" in mine.json()


async def test_refused_clients_learn_why_over_http_and_websocket(tmp_path: Path) -> None:
    runtime, _ = stack(tmp_path, tmp_path / "record.jsonl")
    expired = mint_dev_token(load_dev_signing_key(tmp_path / "dev" / "keys"), subject="bob", roles=["support"],
                             ttl=1, audience=["guard-dev"], issuer="guard-dev", extra={},
                             clock=lambda: time.time() - 3600)
    async with running_runtime(runtime) as base, httpx.AsyncClient(base_url=http(base), timeout=30) as c:
        r = await c.post("/mcp/demo", json=legacy_init(), headers=post_headers(Authorization=f"Bearer {expired}"))
        assert r.status_code == 401
        assert 'error_description="token expired"' in r.headers["www-authenticate"]
        assert "resource_metadata=" in r.headers["www-authenticate"]
        assert r.json()["error"] == {"code": -31003, "message": "token expired", "data": {"reason": "expired"}}
        missing = await c.post("/mcp/demo", json=legacy_init(), headers=post_headers())
        assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["error"]["message"]
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{base}/mcp/demo", subprotocols=["mcp"],  # type: ignore[list-item]
                               additional_headers={"Authorization": f"Bearer {expired}"}):
                pass
        assert info.value.response.status_code == 401
        assert info.value.response.body is not None and b"token expired" in info.value.response.body


async def test_two_authorization_headers_are_refused_over_http(tmp_path: Path) -> None:
    """Smuggling: a proxy reading the first copy and guard the last must never disagree (400, nothing served)."""
    runtime, tokens = stack(tmp_path, tmp_path / "record.jsonl")
    async with running_runtime(runtime) as base, httpx.AsyncClient(base_url=http(base), timeout=30) as c:
        headers = [*post_headers().items(), ("Authorization", f"Bearer {tokens['alice']}"),
                   ("Authorization", f"Bearer {tokens['carol']}")]
        r = await c.post("/mcp/demo", content=json.dumps(legacy_init()).encode(), headers=headers)
        assert r.status_code == 400 and "mcp-session-id" not in r.headers
        assert r.json()["error"]["data"]["reason"] == "duplicate_authorization"

"""Truthful decisions (issue 15): every message guard refuses has a ``deny`` record with stage and reason.

Before: a request blocked by a PII ``block`` rule was recorded as ``allowed`` (the authorize
stage's decision), so ``audit query --decision deny``, the report and any SIEM search missed it;
a duplicate request id or the in-flight cap left no record at all. Real guard over a real
WebSocket, the scripted stdio upstream, the audit file read back.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from guard import devkeys
from guard.audit import query, reader
from tests.core.test_relay_bad_input import call, req
from tests.support.guard_server import running_guard

SCRIPT = str(Path(__file__).resolve().parent.parent / "support" / "scripted_upstream.py")
PII_RULES = str(Path(__file__).resolve().parents[2] / "policies" / "pii.toml")
CARD = "4111 1111 1111 1111"


def settings(tmp_path: Path, **server: Any) -> dict[str, Any]:
    keys = tmp_path / "keys"
    devkeys.generate_all(keys)
    return {
        "server": {"max_in_flight": 2, **server},
        "upstreams": {"s": {"command": sys.executable, "args": [SCRIPT], "terminate_grace": 1.0}},
        "auth": {"anonymous_servers": ["s"]},
        "pii": {"rules": PII_RULES, "keyring_file": str(keys / "pii-keyring.json"), "deployment_id": "decisions"},
        "audit": {"signing_key": str(keys / devkeys.AUDIT_PRIVATE_KEY), "path": str(tmp_path / "audit" / "g.jsonl")},
    }


def denials(tmp_path: Path) -> list[dict[str, Any]]:
    records = list(reader.records([tmp_path / "audit"]))
    return [r for r in records if query.is_denied(r) and "decision" in r["guard"]]


def decision_of(records: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    found = [r for r in records if r["guard"]["decision"]["reason"] == reason]
    assert found, [r["guard"]["decision"] for r in records]
    return found[0]


@pytest.mark.e2e
async def test_pii_blocked_duplicate_id_and_in_flight_refusals_are_recorded_as_deny(tmp_path: Path) -> None:
    async with running_guard(settings(tmp_path)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        blocked = await call(ws, req(1, "tools/call", {"name": "pay", "arguments": {"card": CARD}}))
        assert blocked["error"]["data"]["reason"] == "pii_blocked"
        await ws.send(json.dumps(req(10, "test/hang")))  # in flight: 1
        duplicate = await call(ws, req(10, "tools/list"))
        assert duplicate["error"]["code"] == -32600
        await ws.send(json.dumps(req(11, "test/hang")))  # in flight: 2 (the cap)
        over = await call(ws, req(12, "tools/list"))
        assert over["error"]["data"]["reason"] == "too_many_in_flight"
    records = denials(tmp_path)
    pii = decision_of(records, "pii_blocked")
    assert pii["guard"]["decision"] == {"allowed": False, "reason": "pii_blocked", "stage": "pii"}
    assert pii["event"]["reason"] == "pii_blocked" and pii["guard"]["target"]["name"] == "pay"
    assert CARD not in json.dumps(pii)
    dup = decision_of(records, "duplicate_id")
    assert dup["guard"]["decision"]["stage"] == "session" and dup["guard"]["rpc"]["id"] == "10"
    assert dup["guard"]["rpc"]["method"] == "tools/list"
    cap = decision_of(records, "too_many_in_flight")
    assert cap["guard"]["decision"]["stage"] == "session" and cap["guard"]["rpc"]["id"] == "12"
    # and all three are found by the query an auditor runs
    shown = list(query.select([tmp_path / "audit"], query.Filters(decision="deny")))
    assert {r["event"]["reason"] for r in shown} >= {"pii_blocked", "duplicate_id", "too_many_in_flight"}


@pytest.mark.e2e
async def test_server_to_client_id_clash_is_recorded_as_deny(tmp_path: Path) -> None:
    async with running_guard(settings(tmp_path)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "test/elicit_twice")))
        first = json.loads(await ws.recv())
        assert first["method"] == "elicitation/create" and first["id"] == "dup"
        assert json.loads(await ws.recv())["id"] == 1  # the call's answer: the clash was handled before it
    clash = decision_of(denials(tmp_path), "duplicate_id")
    assert clash["guard"]["direction"] == "server_to_client" and clash["guard"]["decision"]["stage"] == "session"
    assert clash["guard"]["rpc"]["method"] == "elicitation/create"


@pytest.mark.e2e
async def test_refused_handshakes_and_http_sessions_are_recorded_as_deny(tmp_path: Path) -> None:
    """A client that never got a session (no subprotocol, an unknown upstream, over its session
    cap on the HTTP front door) still leaves a ``deny`` record an auditor can query."""
    import httpx
    from websockets.exceptions import InvalidStatus

    from tests.front.helpers import legacy_init, open_session, post_headers

    async with running_guard(settings(tmp_path, max_connections_per_principal=1)) as base:
        with pytest.raises(InvalidStatus):
            async with connect(f"{base}/mcp/s"):  # no "mcp" subprotocol
                pass
        with pytest.raises(InvalidStatus):
            async with connect(f"{base}/mcp/no-such-upstream-alice@example.com", subprotocols=["mcp"]):
                pass
        async with httpx.AsyncClient(base_url=base.replace("ws://", "http://"), timeout=30) as http:
            await open_session(http, "/mcp/s")  # the only session this principal may hold
            over = await http.post("/mcp/s", json=legacy_init(), headers=post_headers())
            assert over.status_code == 429, over.text
    shown = list(query.select([tmp_path / "audit"], query.Filters(decision="deny")))
    reasons = {r["event"]["reason"] for r in shown}
    assert {"subprotocol_required", "unknown_upstream", "too_many_connections_for_principal"} <= reasons, reasons
    assert "alice@example.com" not in json.dumps(shown)  # an unknown upstream's name is the client's text


@pytest.mark.e2e
async def test_late_answer_to_a_cancelled_export_is_recorded_as_the_export_not_as_the_reused_id(
        tmp_path: Path) -> None:
    """Issue 12 item 10 in the record: the export's late answer is a deny (``request_cancelled``)
    under the export's method, never an allowed answer of the harmless call that reused id 1."""
    async with running_guard(settings(tmp_path)) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await ws.send(json.dumps(req(1, "test/slow", {"seconds": 0.5})))
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}))
        for _ in range(100):  # id 1 stays reserved until the export's answer came (and was dropped)
            answer = await call(ws, req(1, "tools/call", {"name": "harmless"}))
            if "result" in answer:
                break
            await asyncio.sleep(0.1)
        assert answer["result"]["params"] == {"name": "harmless"}
    late = decision_of(denials(tmp_path), "request_cancelled")
    assert late["guard"]["direction"] == "server_to_client" and late["guard"]["rpc"]["method"] == "test/slow"
    answers = [r for r in reader.records([tmp_path / "audit"])
               if r["guard"].get("direction") == "server_to_client" and r["guard"].get("rpc", {}).get("id") == "1"]
    assert [r["guard"]["rpc"]["method"] for r in answers if not query.is_denied(r)] == ["tools/call"]

"""End to end: official SDK client -> guard (WebSocket) -> bundled demo server, with the pii stage.

The client must see tokens and masks, never the raw values; the demo server (recording every
request it receives, ``GUARD_DEMO_RECORD``) must see the original e-mail restored in
``send_message`` for a principal allowed to reveal, and the token for one who is not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from guard.client import websocket_client
from guard.config import parse
from guard.context import Principal
from guard.crypto.aead import KeyRing
from guard.pii.engine import Analyzer
from guard.pii.protect import Protector
from guard.pii.rules import PIIRules
from guard.pipeline import Pipeline
from guard.pipeline.pii import PIIStage
from guard.runtime import build_runtime
from tests.support.guard_server import running_runtime

pytestmark = pytest.mark.e2e
EMAIL = "alice.johnson@example.com"


def runtime_with(stage: PIIStage, record: Path) -> Any:
    settings = parse({
        "upstreams": {"demo": {"command": sys.executable, "args": ["-m", "guard.demo"],
                               "env": {"GUARD_DEMO_RECORD": str(record)}}},
        "auth": {"anonymous_servers": ["demo"]},
    })
    runtime = build_runtime(settings)
    runtime.pipeline = Pipeline([*runtime.pipeline.stages, stage])
    return runtime


def recorded_calls(record: Path, tool: str) -> list[dict[str, Any]]:
    calls = []
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        message = entry.get("message", entry)
        params = message.get("params") or {}
        if message.get("method") == "tools/call" and params.get("name") == tool:
            calls.append(params.get("arguments") or {})
    return calls


async def _round_trip(analyzer: Analyzer, rules: PIIRules, ring: KeyRing, tmp_path: Path,
                      may_reveal: bool) -> tuple[Any, Any, list[dict[str, Any]]]:
    asked: list[tuple[str, str, str, str]] = []

    def reveal_check(principal: Principal, server: str, tool: str, entity: str) -> bool:
        asked.append((principal.subject, server, tool, entity))
        return may_reveal and tool == "send_message" and entity == "EMAIL_ADDRESS"

    stage = PIIStage(Protector(analyzer, rules, ring, "e2e"), reveal_check=reveal_check, timeout=10)
    record = tmp_path / "upstream.jsonl"
    async with running_runtime(runtime_with(stage, record)) as base:
        async with Client(websocket_client(f"{base}/mcp/demo")) as client:
            found = await client.call_tool("find_customer", {"query": "Alice"})
            row = found.structured_content["customers"][0]
            sent = await client.call_tool("send_message", {"to": row["email"], "body": "Your renewal is ready."})
    await stage.aclose()
    assert asked and asked[0][1:] == ("demo", "send_message", "EMAIL_ADDRESS")
    return found, sent, recorded_calls(record, "send_message")


async def test_client_sees_tokens_and_allowed_principal_restores(
        analyzer: Analyzer, rules: PIIRules, ring: KeyRing, tmp_path: Path) -> None:
    found, sent, upstream = await _round_trip(analyzer, rules, ring, tmp_path, may_reveal=True)
    everything_the_client_saw = json.dumps(found.model_dump(mode="json"))
    for raw in (EMAIL, "4111-1111-1111-1111", "GB82 WEST 1234 5698 7654 32", "555-0187"):
        assert raw not in everything_the_client_saw
    row = found.structured_content["customers"][0]
    assert row["email"].startswith("<pii:EMAIL_ADDRESS:k1:")
    assert row["card_number"] == "****-****-****-1111"
    text_row = json.loads(found.content[0].text)["customers"][0]
    assert text_row["email"] == row["email"], "tokenize is deterministic: text and structured agree"
    assert upstream == [{"to": EMAIL, "body": "Your renewal is ready."}]
    assert EMAIL not in json.dumps(sent.model_dump(mode="json")), "the echoed recipient is protected again"


async def test_principal_without_permission_cannot_restore(
        analyzer: Analyzer, rules: PIIRules, ring: KeyRing, tmp_path: Path) -> None:
    found, _sent, upstream = await _round_trip(analyzer, rules, ring, tmp_path, may_reveal=False)
    token = found.structured_content["customers"][0]["email"]
    assert upstream == [{"to": token, "body": "Your renewal is ready."}]
    assert EMAIL not in json.dumps(upstream)


async def test_card_in_client_notifications_never_reaches_the_upstream(
        analyzer: Analyzer, rules: PIIRules, ring: KeyRing, tmp_path: Path) -> None:
    """Issue 12 item 16, on the wire: raw WebSocket frames through guard to the recording demo server."""
    from websockets.asyncio.client import connect

    card = "4111 1111 1111 1111"
    stage = PIIStage(Protector(analyzer, rules, ring, "e2e"), timeout=10)
    record = tmp_path / "upstream.jsonl"
    frames = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized", "params": {"_meta": {"note": f"card {card}"}}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9, "reason": f"wrong {card}"}},
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
    ]
    async with running_runtime(runtime_with(stage, record)) as base:
        async with connect(f"{base}/mcp/demo", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps(frames[0]))
            assert json.loads(await ws.recv())["id"] == 1
            for frame in frames[1:]:
                await ws.send(json.dumps(frame))
            answer = json.loads(await ws.recv())
            assert answer["id"] == 2 and "result" in answer  # the session goes on; notifications get no answer
    await stage.aclose()
    received = record.read_text()
    assert '"ping"' in received
    assert "4111" not in received and "notifications/cancelled" not in received

"""Frames refused before they become messages still leave an audit trail (batch smuggling, garbage)."""

from __future__ import annotations

import json
from pathlib import Path

from websockets.asyncio.client import connect

from guard import devkeys
from guard.audit import reader
from tests.core.test_relay_bad_input import call, req, scripted
from tests.support.guard_server import running_guard


async def test_batch_and_garbage_frames_are_audited(tmp_path: Path) -> None:
    devkeys.generate_audit_key(tmp_path / "keys")
    cfg = scripted()
    cfg["audit"] = {"signing_key": str(tmp_path / "keys" / devkeys.AUDIT_PRIVATE_KEY),
                    "path": str(tmp_path / "audit" / "guard.jsonl")}
    async with running_guard(cfg) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await call(ws, [req(1, "tools/call", {"name": "delete_everything"}), req(2)])
        await call(ws, "{not json")
        await call(ws, {"jsonrpc": "2.0", "id": 3})
        await call(ws, req(4, "ping"))
    records = list(reader.records([tmp_path / "audit"]))
    errors = [r for r in records if r["event"]["action"] == "protocol_error"]
    assert [r["guard"]["protocol_error"]["reason"] for r in errors] == ["batch_rejected", "parse_error",
                                                                       "invalid_request"]
    assert all(r["event"]["outcome"] == "failure" for r in errors)
    assert "delete_everything" not in json.dumps(records)  # content of refused frames is never recorded


async def test_key_ids_in_use_are_recorded_at_start_without_key_material(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    devkeys.generate_all(keys)
    cfg = scripted()
    cfg["audit"] = {"signing_key": str(keys / devkeys.AUDIT_PRIVATE_KEY), "path": str(tmp_path / "audit" / "g.jsonl")}
    cfg["pii"] = {"rules": str(Path(__file__).resolve().parents[2] / "policies" / "pii.toml"),
                  "keyring_file": str(keys / "pii-keyring.json")}
    async with running_guard(cfg) as base, connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:
        await call(ws, req(1, "ping"))
    records = list(reader.records([tmp_path / "audit"]))
    loaded = {r["guard"]["keys"]["purpose"]: r["guard"]["keys"] for r in records
              if r["event"]["action"] == "keys_loaded"}
    assert set(loaded) == {"pii", "audit-checkpoints"}
    ring = json.loads((keys / "pii-keyring.json").read_text())
    dumped = json.dumps(records)
    for secret in _strings(ring):
        if len(secret) >= 32:
            assert secret not in dumped


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []

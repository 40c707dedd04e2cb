"""A session never ends with a request unanswered: SIGTERM and token expiry (issue 12, item 14).

A real ``guard serve`` process with an audit log: two calls that never finish are pending when
SIGTERM arrives; once ``drain_timeout`` passes, each gets -31012 (``shutting_down``) before
the session closes 1001, the upstream is told to stop them, the audit log has an outcome for
each, its chain verifies, and the process exits 0. When a session's token expires, a pending
call gets -31003 (``expired``) before the 1008 close.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from guard import devkeys
from guard.audit import reader
from guard.audit.verify import verify
from guard.crypto.signing import load_verify_key
from tests.core.test_relay_bad_input import SCRIPT, req
from tests.hardening.test_limits_and_faults import write_config
from tests.support.guard_server import free_port, guard_process, running_guard
from tests.support.tokens import auth_config, bearer

pytestmark = pytest.mark.slow


def audited_config(tmp_path: Path, record: Path) -> Path:
    """``write_config``'s guard.toml plus a recording upstream and an audit log."""
    devkeys.generate_audit_key(tmp_path / "keys")
    cfg = write_config(tmp_path, "drain_timeout = 0.5")
    text = cfg.read_text().replace("[auth]", f"env = {{ RECORD = {json.dumps(str(record))} }}\n\n[auth]", 1)
    text += (f'\n[audit]\nsigning_key = {json.dumps(str(tmp_path / "keys" / devkeys.AUDIT_PRIVATE_KEY))}\n'
             f'path = {json.dumps(str(tmp_path / "audit" / "guard.jsonl"))}\n')
    cfg.write_text(text)
    return cfg


async def test_sigterm_answers_every_pending_request_with_31012_and_audits_it(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    port = free_port()
    async with guard_process(audited_config(tmp_path, record), port) as proc:
        async with connect(f"ws://127.0.0.1:{port}/mcp/s", subprotocols=["mcp"]) as ws:
            await ws.send(json.dumps(req(1, "test/hang")))
            await ws.send(json.dumps(req("two", "test/hang")))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            answers: dict[Any, Any] = {}
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    answers[msg["id"]] = msg
            assert set(answers) == {1, "two"}
            for answer in answers.values():
                assert answer["error"]["code"] == -31012 and answer["error"]["data"] == {"reason": "shutting_down"}
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    records = list(reader.records([tmp_path / "audit"]))
    outcomes = {r["guard"]["rpc"]["id"]: r for r in records  # the audit schema records ids as strings
                if (r["guard"].get("rpc") or {}).get("kind") == "error" and r["guard"]["rpc"]["id"] in ("1", "two")}
    assert set(outcomes) == {"1", "two"}, [r["guard"].get("rpc") for r in records]
    for rec in outcomes.values():
        assert rec["guard"]["upstream"]["outcome"] == "shutting_down" and rec["event"]["outcome"] == "failure"
    public = load_verify_key(tmp_path / "keys" / devkeys.AUDIT_PUBLIC_KEY)
    assert verify([tmp_path / "audit"], keys=[public]).status == "intact"
    forwarded = [json.loads(line) for line in record.read_text().splitlines()]
    hung = sorted(m["id"] for m in forwarded if m.get("method") == "test/hang")
    cancelled = sorted(m["params"]["requestId"] for m in forwarded if m.get("method") == "notifications/cancelled")
    assert cancelled == hung  # the upstream was told to stop both


async def test_pending_call_is_answered_31003_when_the_session_token_expires() -> None:
    cfg = {"upstreams": {"s": {"command": sys.executable, "args": [SCRIPT], "terminate_grace": 1.0}},
           "auth": auth_config(leeway=0)}
    async with running_guard(cfg) as base, \
            connect(f"{base}/mcp/s", subprotocols=["mcp"], additional_headers=bearer("alice", ttl=5)) as ws:
        await ws.send(json.dumps(req(1, "test/hang")))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 20))  # the expiry timer ends the silent session
        assert reply["id"] == 1 and reply["error"]["code"] == -31003 and reply["error"]["data"] == {"reason": "expired"}
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1008 and ws.close_reason == "token expired"

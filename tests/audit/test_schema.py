"""Records built from contexts and events: ECS names, typed fields only, never values."""

from __future__ import annotations

import orjson

from guard.audit import schema
from guard.audit.canonical import canonical
from guard.context import Event, EventKind, Principal, SessionInfo
from tests.audit.helpers import PII_VALUE, START, TOKEN_VALUE, call_ctx, result_ctx, session


def build(ctx, perf: float = 10.25):  # type: ignore[no-untyped-def]
    return schema.message_record(ctx, now=START, perf=perf, event_id="evt-1")


def test_allowed_call_record_maps_every_field_to_ecs() -> None:
    rec = build(call_ctx())
    assert rec["@timestamp"] == "2026-01-01T00:00:00.000000Z"
    assert rec["ecs"] == {"version": schema.ECS_VERSION}
    event = rec["event"]
    assert (event["id"], event["kind"], event["category"], event["type"], event["action"], event["outcome"]) == (
        "evt-1", "event", ["api"], ["access", "allowed"], "tools/call", "success")
    assert rec["user"] == {"id": "alice", "name": "alice", "roles": ["analyst"]}
    assert rec["organization"] == {"id": "acme"}
    assert rec["client"] == {"address": "127.0.0.1:50123", "ip": "127.0.0.1", "port": 50123}
    assert rec["service"] == {"name": "guard", "type": "mcp-proxy", "target": {"name": "crm"}}
    assert rec["rule"] == {"name": "p, analyst, crm, lookup"}
    g = rec["guard"]
    assert g["session"] == {"id": "sess-1"}
    assert g["direction"] == "client_to_server"
    assert g["rpc"] == {"kind": "request", "id": "1", "method": "tools/call"}
    assert g["target"] == {"type": "tool", "name": "lookup"}
    assert g["decision"] == {"allowed": True, "reason": "policy_allow", "rule": "p, analyst, crm, lookup"}
    assert g["verdict"] == {"action": "continue"}
    assert g["principal"]["issuer"] == "https://idp.example"
    assert g["principal"]["expires"] == "2026-01-01T01:00:00.000000Z"
    assert g["message"]["bytes_forwarded"] > 0


def test_denied_call_record_names_stage_code_and_reason() -> None:
    rec = build(call_ctx(allowed=False))
    assert rec["event"]["outcome"] == "failure"
    assert rec["event"]["type"] == ["access", "denied"]
    assert rec["event"]["reason"] == "policy_deny"
    assert rec["error"] == {"code": "-31001", "message": "Denied by policy"}
    assert rec["guard"]["verdict"] == {"action": "reject", "code": -31001, "stage": "authorize",
                                       "reason": "policy_denied"}
    assert "bytes_forwarded" not in rec["guard"]["message"]


def test_pii_result_record_counts_findings_without_values() -> None:
    rec = build(result_ctx(), perf=10.25)
    pii = rec["guard"]["pii"]
    assert pii["count"] == 3
    assert pii["entity_types"] == ["EMAIL_ADDRESS", "PERSON"]
    assert pii["actions"] == ["mask", "redact"]
    assert {"entity_type": "EMAIL_ADDRESS", "path": "$.result.content[0].text", "action": "redact",
            "count": 2} in pii["findings"]
    assert rec["event"]["duration"] == 250_000_000
    assert rec["guard"]["upstream"] == {"outcome": "ok"}
    assert rec["event"]["type"] == ["access", "end"]
    assert rec["network"]["direction"] == "egress"


def test_tool_error_result_is_a_failure_outcome() -> None:
    rec = build(result_ctx(outcome="is_error", findings=[]))
    assert rec["event"]["outcome"] == "failure"
    assert rec["guard"]["upstream"]["outcome"] == "is_error"
    assert "pii" not in rec["guard"]


def test_record_never_copies_arguments_results_or_scores() -> None:
    """Records are built from typed fields only: the PII in arguments/results must not appear."""
    for ctx in (call_ctx(), call_ctx(allowed=False), result_ctx()):
        data = canonical(build(ctx))
        assert PII_VALUE.encode() not in data
        assert b"jane" not in data
        assert b"0.95" not in data


def test_auth_failure_event_record() -> None:
    rec = schema.event_record(
        Event(EventKind.AUTH_FAILURE, server="crm", client_addr="[2001:db8::1]:443", reason="token_expired",
              code=401, details={"token": TOKEN_VALUE}, at=START),
        event_id="evt-9")
    assert rec["event"]["category"] == ["authentication"]
    assert rec["event"]["outcome"] == "failure"
    assert rec["event"]["reason"] == "token_expired"
    assert rec["client"] == {"address": "[2001:db8::1]:443", "ip": "2001:db8::1", "port": 443}
    assert rec["guard"]["auth"] == {"reason": "token_expired", "status": 401}
    assert rec["http"] == {"response": {"status_code": 401}}
    assert TOKEN_VALUE.encode() not in canonical(rec)


def test_connect_close_reload_and_keys_events() -> None:
    s = session()
    connect = schema.event_record(Event(EventKind.CONNECT, session=s, at=START), event_id="e1")
    assert connect["event"]["category"] == ["session"] and connect["event"]["type"] == ["start"]
    assert connect["user"]["name"] == "alice"
    close = schema.event_record(Event(EventKind.CLOSE, session=s, code=1008, reason="policy", at=START),
                                event_id="e2")
    assert close["guard"]["close"] == {"code": 1008, "reason": "policy"}
    digest = "a" * 64
    reload_ok = schema.event_record(Event(EventKind.POLICY_RELOAD, details={
        "ok": True, "error": None, "digests": {"policy": "sha256:" + digest, "model": "not-hex"},
        "previous_digests": None, "rules": 12}, at=START), event_id="e3")
    assert reload_ok["event"]["outcome"] == "success"
    assert reload_ok["guard"]["policy"] == {"ok": True, "digests": {"policy": "sha256:" + digest}, "rules": 12}
    reload_bad = schema.event_record(Event(EventKind.POLICY_RELOAD, reason="line 3: bad rule",
                                           details={"ok": False}, at=START), event_id="e4")
    assert reload_bad["event"]["outcome"] == "failure"
    assert reload_bad["guard"]["policy"]["error"] == "line 3: bad rule"
    keys = schema.event_record(Event(EventKind.KEYS_LOADED, details={
        "purpose": "pii", "key_ids": ["k1", "k2", 3], "primary": "k2", "secret": "zzz"}, at=START),
        event_id="e5")
    assert keys["guard"]["keys"] == {"purpose": "pii", "key_ids": ["k1", "k2"], "primary": "k2"}
    assert b"zzz" not in canonical(keys)


def test_lone_surrogates_and_long_names_are_made_safe() -> None:
    """A client can send '\\ud800' in a tool name (valid JSON escape); the record must still serialize."""
    ctx = call_ctx(tool="x\ud800y" + "z" * 5000)
    rec = build(ctx)
    name = rec["guard"]["target"]["name"]
    assert len(name) <= schema.MAX_TARGET
    orjson.loads(canonical(rec))


def test_anonymous_principal_and_unparseable_address() -> None:
    s = SessionInfo(id="s", server="crm", client_addr="unix-socket", principal=Principal("anonymous",
                                                                                         anonymous=True))
    rec = schema.event_record(Event(EventKind.CONNECT, session=s, at=START), event_id="e")
    assert rec["client"] == {"address": "unix-socket"}
    assert rec["guard"]["principal"] == {"anonymous": True}
    assert "organization" not in rec

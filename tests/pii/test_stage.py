"""The ``pii`` stage: both directions, reveal round trip, fail-closed, bounded queue, timeouts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from guard import configtools as ct
from guard.context import Direction, MessageContext, Principal, RequestRecord, SessionInfo, Verdict
from guard.crypto.aead import KeyRing
from guard.jsonrpc import ErrorCode, Kind, Message
from guard.pii.engine import Analyzer
from guard.pii.pool import ProcessAnalysis, ThreadAnalysis
from guard.pii.protect import Protector
from guard.pii.rules import PIIRules, parse_rules
from guard.pii.settings import PIISettings
from guard.pipeline.pii import PIIStage, build_pii_stage

ALICE = Principal(subject="alice", roles=("support",), tenant="acme")
MALLORY = Principal(subject="mallory", tenant="acme")
EMAIL = "alice.johnson@example.com"


def result_ctx(result: dict[str, Any], server: str = "demo", tool: str = "find_customer",
               principal: Principal = ALICE) -> MessageContext:
    session = SessionInfo(id="s1", server=server, client_addr="127.0.0.1", principal=principal)
    record = RequestRecord(id=1, method="tools/call", target=tool, direction=Direction.CLIENT_TO_SERVER,
                           started=time.perf_counter())
    return MessageContext(session=session, direction=Direction.SERVER_TO_CLIENT,
                          message=Message(Kind.RESULT, {"jsonrpc": "2.0", "id": 1, "result": result}),
                          method="tools/call", target=tool, request=record)


def call_ctx(tool: str, arguments: dict[str, Any], principal: Principal = ALICE,
             server: str = "demo") -> MessageContext:
    session = SessionInfo(id="s1", server=server, client_addr="127.0.0.1", principal=principal)
    payload = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    return MessageContext(session=session, direction=Direction.CLIENT_TO_SERVER,
                          message=Message(Kind.REQUEST, payload), method="tools/call", target=tool)


def customer() -> dict[str, Any]:
    row = {"name": "Alice Johnson", "email": EMAIL, "phone": "+1 (212) 555-0187", "card_number": "4111-1111-1111-1111",
           "iban": "GB82 WEST 1234 5698 7654 32", "ssn": "536-22-8726", "ip": "203.0.113.9",
           "employee": "EMP-004211", "note": "ok"}
    return {"content": [], "structuredContent": {"customers": [row]}}


def reveal_for(*allowed: tuple[str, str]) -> Any:
    calls: list[tuple[str, str, str, str]] = []

    def check(principal: Principal, server: str, tool: str, entity: str) -> bool:
        calls.append((principal.subject, server, tool, entity))
        return (principal.subject, entity) in allowed

    check.calls = calls  # type: ignore[attr-defined]
    return check


@pytest.fixture()
def stage(protector: Protector) -> PIIStage:
    return PIIStage(protector, reveal_check=reveal_for(("alice", "EMAIL_ADDRESS")), timeout=5)


async def test_each_action_applied_to_a_tool_result(stage: PIIStage) -> None:
    ctx = result_ctx(customer())
    verdict = await stage.process(ctx)
    assert not verdict.rejected and verdict.message is not None
    row = verdict.message.payload["result"]["structuredContent"]["customers"][0]
    assert row["email"].startswith("<pii:EMAIL_ADDRESS:k1:")  # tokenize
    assert row["phone"] == "+* (***) ***-0187"  # mask
    assert row["card_number"] == "****-****-****-1111"  # mask
    assert row["iban"].startswith("<pii:IBAN_CODE:k1:")  # encrypt
    assert row["ssn"] == "[REDACTED:US_SSN]"  # redact
    assert row["ip"].startswith("<pii-hash:IP_ADDRESS:k1:")  # hash
    assert row["employee"].startswith("<pii-hash:EMPLOYEE_ID:k1:")  # custom recognizer + hash
    assert row["name"] == "Alice Johnson" and row["note"] == "ok"  # allow / no finding
    actions = {(f.entity_type, f.action) for f in ctx.findings}
    assert actions == {("EMAIL_ADDRESS", "tokenize"), ("PHONE_NUMBER", "mask"), ("CREDIT_CARD", "mask"),
                       ("IBAN_CODE", "encrypt"), ("US_SSN", "redact"), ("IP_ADDRESS", "hash"),
                       ("EMPLOYEE_ID", "hash")}
    assert {f.path for f in ctx.findings if f.entity_type == "EMAIL_ADDRESS"} == \
        {"$.result.structuredContent.customers[0].email"}
    assert all(EMAIL not in repr(f) for f in ctx.findings), "findings never carry values"
    assert ctx.message.payload["result"]["structuredContent"]["customers"][0]["email"] == EMAIL, "no mutation"


async def test_block_action_rejects_request(stage: PIIStage) -> None:
    ctx = call_ctx("pay", {"card": "4111 1111 1111 1111"})
    verdict = await stage.process(ctx)
    assert verdict.rejected and verdict.code == ErrorCode.PII_BLOCKED
    assert verdict.data == {"reason": "pii_blocked"}
    assert [(f.entity_type, f.action, f.path) for f in ctx.findings] == \
        [("CREDIT_CARD", "block", "$.params.arguments.card")]


async def _token_for(stage: PIIStage, entity_field: str = "email", principal: Principal = ALICE) -> str:
    ctx = result_ctx(customer(), principal=principal)
    verdict = await stage.process(ctx)
    assert verdict.message is not None
    return str(verdict.message.payload["result"]["structuredContent"]["customers"][0][entity_field])


async def test_round_trip_restores_original_for_allowed_principal(stage: PIIStage) -> None:
    token = await _token_for(stage)
    ctx = call_ctx("send_message", {"to": token, "body": f"Hello {token}!"})
    verdict = await stage.process(ctx)
    assert not verdict.rejected and verdict.message is not None
    args = verdict.message.payload["params"]["arguments"]
    assert args == {"to": EMAIL, "body": f"Hello {EMAIL}!"}
    assert [(f.action, f.path) for f in ctx.findings] == [("reveal", "$.params.arguments.to"),
                                                           ("reveal", "$.params.arguments.body")]
    assert stage._reveal_check.calls == [("alice", "demo", "send_message", "EMAIL_ADDRESS")]  # type: ignore[attr-defined]


async def test_principal_without_reveal_permission_gets_the_token_passed(stage: PIIStage) -> None:
    token = await _token_for(stage, principal=MALLORY)
    ctx = call_ctx("send_message", {"to": token}, principal=MALLORY)
    verdict = await stage.process(ctx)
    assert not verdict.rejected and verdict.message is None  # unchanged: upstream sees the token
    assert [(f.entity_type, f.action) for f in ctx.findings] == [("EMAIL_ADDRESS", "token_passed")]


async def test_reveal_denied_rule_rejects(stage: PIIStage) -> None:
    token = await _token_for(stage, "iban")
    ctx = call_ctx("refund", {"iban": token})
    verdict = await stage.process(ctx)
    assert verdict.rejected and verdict.code == ErrorCode.PII_BLOCKED
    assert verdict.data == {"reason": "pii_reveal_denied"}


async def test_async_reveal_check_is_awaited(protector: Protector) -> None:
    async def allow(principal: Principal, server: str, tool: str, entity: str) -> bool:
        await asyncio.sleep(0)
        return True

    stage = PIIStage(protector, reveal_check=allow)
    token = await _token_for(stage, "iban")
    verdict = await stage.process(call_ctx("refund", {"iban": token}))
    assert verdict.message is not None
    assert verdict.message.payload["params"]["arguments"]["iban"] == "GB82 WEST 1234 5698 7654 32"


async def test_reveal_check_error_counts_as_denied(protector: Protector) -> None:
    def broken(*args: Any) -> bool:
        raise RuntimeError("authorizer down")

    stage = PIIStage(protector, reveal_check=broken)
    token = await _token_for(stage)
    ctx = call_ctx("send_message", {"to": token})
    verdict = await stage.process(ctx)
    assert verdict.message is None and ctx.findings[0].action == "token_passed"


async def test_tampered_token_fails_closed(stage: PIIStage) -> None:
    token = await _token_for(stage)
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + ">"
    ctx = call_ctx("send_message", {"to": forged})
    verdict = await stage.process(ctx)
    assert verdict.rejected and verdict.code == ErrorCode.PII_TOKEN_INVALID
    assert verdict.data == {"reason": "pii_token_invalid"}


async def test_token_like_garbage_fails_closed(stage: PIIStage) -> None:
    verdict = await stage.process(call_ctx("send_message", {"to": "<pii:EMAIL_ADDRESS:k1:short>"}))
    assert verdict.rejected and verdict.code == ErrorCode.PII_TOKEN_INVALID


async def test_token_from_another_deployment_is_rejected(analyzer: Analyzer, rules: PIIRules, ring: KeyRing) -> None:
    other = PIIStage(Protector(analyzer, rules, ring, "other-deployment"))
    token = await _token_for(other)
    stage = PIIStage(Protector(analyzer, rules, ring, "test-deployment"), reveal_check=lambda *a: True)
    verdict = await stage.process(call_ctx("send_message", {"to": token}))
    assert verdict.rejected and verdict.code == ErrorCode.PII_TOKEN_INVALID


async def test_token_bound_to_tenant_cannot_cross_tenants(analyzer: Analyzer, rules: PIIRules, ring: KeyRing) -> None:
    stage = PIIStage(Protector(analyzer, rules, ring, "d", bind_tenant=True), reveal_check=lambda *a: True)
    token = await _token_for(stage)
    other_tenant = Principal(subject="alice", tenant="globex")
    verdict = await stage.process(call_ctx("send_message", {"to": token}, principal=other_tenant))
    assert verdict.rejected and verdict.code == ErrorCode.PII_TOKEN_INVALID
    verdict = await stage.process(call_ctx("send_message", {"to": token}))
    assert verdict.message is not None and verdict.message.payload["params"]["arguments"]["to"] == EMAIL


async def test_restored_value_is_not_protected_again(analyzer: Analyzer, ring: KeyRing) -> None:
    # to_server EMAIL is "redact" here: without the token exclusion the reveal would be undone.
    problems = ct.Problems()
    strict = parse_rules({"entities": {"EMAIL_ADDRESS": {"to_client": "tokenize", "to_server": "redact"}}}, problems)
    stage = PIIStage(Protector(analyzer, strict, ring, "d"), reveal_check=lambda *a: True)
    token = await _token_for(stage)
    verdict = await stage.process(call_ctx("send_message", {"to": f"{token}, cc bob@example.org"}))
    assert verdict.message is not None
    assert verdict.message.payload["params"]["arguments"]["to"] == f"{EMAIL}, cc [REDACTED:EMAIL_ADDRESS]"


class ExplodingAnalyzer:
    def analyze(self, text: str, context: Any = None) -> list[Any]:
        raise RuntimeError("analyzer crashed")


class SlowAnalyzer:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()

    def analyze(self, text: str, context: Any = None) -> list[Any]:
        if not self.started.is_set():
            self.started.set()
            time.sleep(self.seconds)
        return []


def _protector_with(analyzer: Any, rules: PIIRules, ring: KeyRing) -> Protector:
    return Protector(analyzer, rules, ring, "d")


async def test_analyzer_error_fails_closed(rules: PIIRules, ring: KeyRing) -> None:
    stage = PIIStage(_protector_with(ExplodingAnalyzer(), rules, ring))
    ctx = result_ctx(customer())
    verdict = await stage.process(ctx)
    assert verdict.rejected and verdict.code == ErrorCode.PII_UNAVAILABLE
    assert verdict.data == {"reason": "pii_error", "upstream_executed": True} and ctx.fail_open == []


async def test_fail_open_server_passes_and_is_audited(rules: PIIRules, ring: KeyRing) -> None:
    stage = PIIStage(_protector_with(ExplodingAnalyzer(), rules, ring), fail_open=frozenset({"demo"}))
    ctx = result_ctx(customer())
    verdict = await stage.process(ctx)
    assert not verdict.rejected and verdict.message is None
    assert ctx.fail_open == ["pii"]
    other = result_ctx(customer(), server="crm")
    assert (await stage.process(other)).code == ErrorCode.PII_UNAVAILABLE


async def test_timeout_fails_closed_and_slot_held_until_thread_finishes(rules: PIIRules, ring: KeyRing) -> None:
    slow = SlowAnalyzer(0.5)
    stage = PIIStage(_protector_with(slow, rules, ring), timeout=0.05, max_pending=1)
    verdict = await stage.process(result_ctx(customer()))
    assert verdict.rejected and verdict.data == {"reason": "pii_timeout", "upstream_executed": True}
    assert stage.pending == 1  # the thread is still running: its slot is not freed early
    verdict = await stage.process(result_ctx(customer()))
    assert verdict.data == {"reason": "pii_overloaded", "upstream_executed": True}
    for _ in range(100):
        if stage.pending == 0:
            break
        await asyncio.sleep(0.02)
    assert stage.pending == 0
    await stage.aclose()


async def test_slow_message_does_not_stall_other_sessions(rules: PIIRules, ring: KeyRing, analyzer: Analyzer) -> None:
    slow = SlowAnalyzer(0.6)
    slow_stage = PIIStage(_protector_with(slow, rules, ring), timeout=5)
    fast_stage = PIIStage(Protector(analyzer, rules, ring, "d"), timeout=5)
    slow_task = asyncio.create_task(slow_stage.process(result_ctx(customer())))
    while not slow.started.is_set():
        await asyncio.sleep(0.005)
    started = time.perf_counter()
    verdict = await fast_stage.process(result_ctx(customer()))
    elapsed = time.perf_counter() - started
    assert verdict.message is not None and not slow_task.done()
    assert elapsed < 0.5
    await slow_task
    await slow_stage.aclose()
    await fast_stage.aclose()


async def test_messages_without_user_data_skip_the_pool(rules: PIIRules, ring: KeyRing) -> None:
    stage = PIIStage(_protector_with(ExplodingAnalyzer(), rules, ring))
    session = SessionInfo(id="s", server="demo", client_addr="x", principal=ALICE)
    ctx = MessageContext(session=session, direction=Direction.SERVER_TO_CLIENT,
                         message=Message(Kind.RESULT, {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}),
                         method="tools/list")
    assert (await stage.process(ctx)).rejected is False


async def test_build_pii_stage_from_settings(rules: PIIRules, ring: KeyRing) -> None:
    assert build_pii_stage(PIISettings()) is None
    stage = build_pii_stage(PIISettings(enabled=True, rules=rules, keyring=ring, deployment_id="d", timeout=3,
                                        workers=1))
    assert isinstance(stage, PIIStage) and isinstance(stage.analysis, ProcessAnalysis)
    assert stage.protector.analyzer is None  # the analyzer lives in the worker process
    await stage.start()
    verdict = await stage.process(result_ctx(customer()))
    assert verdict.message is not None and EMAIL not in str(verdict.message.payload)
    await stage.aclose()


async def test_workers_zero_analyzes_in_a_thread_of_this_process(rules: PIIRules, ring: KeyRing) -> None:
    stage = build_pii_stage(PIISettings(enabled=True, rules=rules, keyring=ring, deployment_id="d", workers=0))
    assert stage is not None and isinstance(stage.analysis, ThreadAnalysis)
    await stage.start()
    verdict = await stage.process(result_ctx(customer()))
    assert verdict.message is not None and EMAIL not in str(verdict.message.payload)
    await stage.aclose()


def _notification_ctx(method: str, params: dict[str, Any]) -> MessageContext:
    session = SessionInfo(id="s1", server="demo", client_addr="127.0.0.1", principal=ALICE)
    return MessageContext(session=session, direction=Direction.CLIENT_TO_SERVER,
                          message=Message(Kind.NOTIFICATION, {"jsonrpc": "2.0", "method": method, "params": params}),
                          method=method)


@pytest.mark.parametrize(("method", "params"), [
    ("notifications/cancelled", {"requestId": 3, "reason": "wrong card 4111 1111 1111 1111"}),
    ("notifications/initialized", {"_meta": {"note": "card 4111-1111-1111-1111"}}),
    ("notifications/roots/list_changed", {"hint": "4111111111111111"}),
])
async def test_blocked_card_in_a_client_notification_does_not_reach_upstream(
        stage: PIIStage, method: str, params: dict[str, Any]) -> None:
    """Issue 12 item 16: ``to_server = "block"`` applies to every client -> server message."""
    ctx = _notification_ctx(method, params)
    verdict = await stage.process(ctx)
    assert verdict.rejected and verdict.code == ErrorCode.PII_BLOCKED
    assert [f.entity_type for f in ctx.findings] == ["CREDIT_CARD"]


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


async def test_deeply_nested_result_is_rejected_even_on_a_fail_open_server(protector: Protector) -> None:
    """Issue 12 item 15: input the walker cannot handle is never passed, whatever ``fail_open`` says."""
    stage = PIIStage(protector, fail_open=frozenset({"demo"}), timeout=5)
    ctx = result_ctx({"content": [], "structuredContent": _deep(400)})
    verdict = await stage.process(ctx)
    assert verdict.rejected and verdict.code == ErrorCode.PII_BLOCKED
    assert verdict.data == {"reason": "pii_too_deep"} and ctx.fail_open == []
    ok = await stage.process(result_ctx({"content": [], "structuredContent": _deep(50)}))
    assert not ok.rejected


def _read_ctx(uri: str, verdict: Verdict | None = None) -> MessageContext:
    session = SessionInfo(id="s1", server="demo", client_addr="127.0.0.1", principal=ALICE)
    payload = {"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": uri}}
    ctx = MessageContext(session=session, direction=Direction.CLIENT_TO_SERVER, message=Message(Kind.REQUEST, payload),
                         method="resources/read", target=uri)
    if verdict is not None:
        ctx.verdict = verdict
    return ctx


async def test_resource_uri_with_pii_is_protected_in_the_audit_target(stage: PIIStage) -> None:
    uri = f"crm://customers/{EMAIL}/orders"
    ctx = _read_ctx(uri)
    verdict = await stage.process(ctx)
    assert not verdict.rejected
    assert ctx.audit_target is not None and EMAIL not in ctx.audit_target
    assert ctx.audit_target.startswith("crm://customers/<pii:EMAIL_ADDRESS:k1:")
    assert ctx.target == uri  # authorization and correlation keep the real target
    from guard.audit.schema import message_record

    record = message_record(ctx, now=0.0, perf=0.0, event_id="e1")
    assert EMAIL not in json.dumps(record) and record["guard"]["target"]["name"] == ctx.audit_target
    # A request another stage denied is not scanned, but its audit target still is protected.
    denied = _read_ctx(uri, Verdict.reject(ErrorCode.POLICY_DENIED, "denied"))
    assert (await stage.process(denied)).rejected is False  # the stage does not change the verdict
    assert denied.audit_target is not None and EMAIL not in denied.audit_target and not denied.findings


async def test_audit_target_is_withheld_when_analysis_fails(rules: PIIRules, ring: KeyRing) -> None:
    stage = PIIStage(_protector_with(ExplodingAnalyzer(), rules, ring), fail_open=frozenset({"demo"}))
    ctx = _read_ctx(f"crm://customers/{EMAIL}")
    assert not (await stage.process(ctx)).rejected and ctx.fail_open == ["pii"]
    assert ctx.audit_target is not None and EMAIL not in ctx.audit_target


async def test_structured_content_and_its_text_copy_are_protected_alike(stage: PIIStage) -> None:
    doc = customer()["structuredContent"]
    ctx = result_ctx({"content": [{"type": "text", "text": json.dumps(doc)}], "structuredContent": doc})
    verdict = await stage.process(ctx)
    assert verdict.message is not None
    result = verdict.message.payload["result"]
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]  # encrypt included
    assert result["structuredContent"]["customers"][0]["iban"].startswith("<pii:IBAN_CODE:k1:")


async def test_value_split_over_two_text_blocks_is_masked_in_place(stage: PIIStage) -> None:
    ctx = result_ctx({"content": [{"type": "text", "text": "Call +1 (212) 555-"},
                                  {"type": "text", "text": "0187 today, card 4111 1111 "},
                                  {"type": "text", "text": "1111 1111 please"}]})
    verdict = await stage.process(ctx)
    assert verdict.message is not None
    texts = [b["text"] for b in verdict.message.payload["result"]["content"]]
    assert texts[0] == "Call +* (***) ***-" and texts[1].startswith("0187 today, card **** **** ")
    assert texts[2] == "**** 1111 please"
    assert {f.entity_type for f in ctx.findings} == {"PHONE_NUMBER", "CREDIT_CARD"}

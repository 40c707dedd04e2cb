"""What a span may say about a message (:mod:`guard.tracing.attributes`), fed messages directly."""

from __future__ import annotations

import json

from guard.context import Decision, Direction, Finding, MessageContext, SessionInfo, Verdict
from guard.jsonrpc import parse
from guard.tracing import attributes as attrs

SESSION = SessionInfo(id="s", server="crm", client_addr="127.0.0.1:1")


def ctx(method: str, target: str | None, audit_target: str | None = None) -> MessageContext:
    message = parse(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}))
    context = MessageContext(SESSION, Direction.CLIENT_TO_SERVER, message, method, target)
    context.audit_target = audit_target
    return context


def test_methods_mcp_does_not_define_are_recorded_as_other() -> None:
    assert attrs.method_name("tools/call") == "tools/call"
    assert attrs.method_name("notifications/progress") == "notifications/progress"
    assert attrs.method_name("alice.johnson@example.com") == "other"
    assert attrs.method_name(None) == "other"


def test_resource_uri_in_clear_is_never_recorded() -> None:
    uri = "file:///home/alice.johnson/medical.pdf"
    assert attrs.target_attributes(ctx("resources/read", uri)) == {"guard.target.type": "resource"}
    protected = "file:///home/<pii:PERSON:k1:abc>/medical.pdf"
    assert attrs.target_attributes(ctx("resources/read", uri, protected))["guard.target.name"] == protected
    assert attrs.target_attributes(ctx("completion/complete", uri)) == {"guard.target.type": "completion"}


def test_tool_and_prompt_names_follow_the_audit_record() -> None:
    assert attrs.target_attributes(ctx("tools/call", "find_customer")) == {
        "guard.target.type": "tool", "guard.target.name": "find_customer", "gen_ai.tool.name": "find_customer"}
    withheld = attrs.target_attributes(ctx("tools/call", "x", "[target withheld]"))
    assert withheld["gen_ai.tool.name"] == "[target withheld]"
    assert attrs.target_attributes(ctx("prompts/get", "summarize"))["guard.target.name"] == "summarize"
    assert len(attrs.target_attributes(ctx("tools/call", "t" * 10_000))["guard.target.name"]) == attrs.MAX_NAME
    assert attrs.target_attributes(ctx("tools/list", None)) == {}


def test_findings_are_counts_and_types_only() -> None:
    context = ctx("tools/call", "t")
    context.findings = [Finding("EMAIL_ADDRESS", "$.result.email", "tokenize", 0.9),
                        Finding("PHONE_NUMBER", "$.result.phone", "mask", 0.8)]
    assert attrs.findings_of(context) == (2, frozenset({"EMAIL_ADDRESS", "PHONE_NUMBER"}))


def test_decisions_outcomes_and_rejections() -> None:
    context = ctx("tools/call", "t")
    context.decision = Decision(False, "default_deny", "p, role:x, crm, tools/call, t, deny")
    assert attrs.decision_attributes(context) == {"guard.decision": "deny", "guard.decision.reason": "default_deny"}
    refused = Verdict.reject(-31001, "Denied by policy: secret detail", {"reason": "policy_denied", "x": 1},
                             stage="authorize")
    assert attrs.rejection_attributes(refused) == {"rpc.jsonrpc.error_code": -31001, "guard.rejected_by": "authorize",
                                                   "error.type": "policy_denied"}
    assert attrs.outcome_of(refused, "ok") == "rejected" and attrs.outcome_of(None, None) == "ok"
    assert attrs.verdict_name(Verdict.proceed()) == "continue" and attrs.verdict_name(refused) == "reject"
    assert attrs.verdict_name(Verdict.proceed(context.message)) == "rewrite"

"""The authorize stage on real-shaped MCP messages: denials, plumbing, server requests, list filtering."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from guard import mcp
from guard.context import ANONYMOUS, Decision, Direction, MessageContext, Principal, RequestRecord, SessionInfo
from guard.jsonrpc import ErrorCode, Kind, Message, notification, request
from guard.pipeline import Pipeline
from guard.pipeline.authorize import AuthorizeStage, arguments_of
from guard.policy.engine import Authorizer
from guard.policy.settings import PolicySettings
from tests.policy.conftest import POLICIES, snapshot

POLICY = """
g, role:support, role:analyst
p, role:analyst, demo, tools/list, *, allow
p, role:analyst, demo, tools/call, find_customer, allow
p, role:analyst, demo, tools/call, list_customers, allow
p, role:analyst, demo, prompts/list, *, allow
p, role:analyst, demo, prompts/get, summarize_customer, allow
p, role:analyst, demo, resources/list, *, allow
p, role:analyst, demo, resources/templates/list, *, allow
p, role:analyst, demo, resources/read, customers://*, allow
p, role:support, demo, tools/call, send_message, allow, to glob *@example.com
p, role:support, demo, sampling/createMessage, *, allow, maxTokens <= 1000
p, *, demo, roots/list, *, deny
p, role:analyst, demo, resources/read, customers://directory, deny
p, role:analyst, demo, completion/complete, summarize_customer, allow
p, role:analyst, demo, completion/complete, customers://{customer_id}, allow
"""

ANALYST = Principal(subject="alice", roles=("analyst",))
SUPPORT = Principal(subject="bob", roles=("support",))


def stage(deny_as_unknown: bool = False) -> AuthorizeStage:
    return AuthorizeStage(Authorizer(snapshot(POLICY)), deny_as_unknown=deny_as_unknown)


def c2s_request(principal: Principal, method: str, params: dict[str, Any], request_id: int = 7) -> MessageContext:
    message = request(request_id, method, params)
    record = RequestRecord(request_id, method, mcp.target_of(method, params), Direction.CLIENT_TO_SERVER, 0.0,
                           params)
    return MessageContext(SessionInfo("s1", "demo", "127.0.0.1", principal), Direction.CLIENT_TO_SERVER, message,
                          method, mcp.target_of(method, params), record)


def s2c_result(principal: Principal, method: str, result: dict[str, Any]) -> MessageContext:
    message = Message(Kind.RESULT, {"jsonrpc": "2.0", "id": 7, "result": result})
    record = RequestRecord(7, method, None, Direction.CLIENT_TO_SERVER, 0.0, {})
    return MessageContext(SessionInfo("s1", "demo", "127.0.0.1", principal), Direction.SERVER_TO_CLIENT, message,
                          method, None, record)


# -- client requests ----------------------------------------------------------------------------

async def test_allowed_call_proceeds_unchanged_and_records_the_rule() -> None:
    ctx = c2s_request(ANALYST, "tools/call", {"name": "find_customer", "arguments": {"query": "Ada"}})
    verdict = await stage().process(ctx)
    assert not verdict.rejected and verdict.message is None
    assert ctx.decision == Decision(True, "allowed", "p, role:analyst, demo, tools/call, find_customer, allow")


async def test_denied_call_gets_the_documented_error() -> None:
    ctx = c2s_request(ANALYST, "tools/call", {"name": "delete_customer", "arguments": {"customer_id": "C001"}})
    verdict = await stage().process(ctx)
    assert verdict.rejected
    assert (verdict.code, verdict.error_message, verdict.data) == (
        ErrorCode.POLICY_DENIED, "Denied by policy", {"reason": "policy_denied"})
    assert ErrorCode.POLICY_DENIED == -31001
    assert ctx.decision == Decision(False, "default_deny", None)


async def test_denied_request_error_carries_the_request_id_through_the_relay_contract() -> None:
    """The pipeline hands the relay a reject; the relay answers with the request's id (guard/relay.py)."""
    from guard.jsonrpc import error_response

    ctx = c2s_request(ANALYST, "tools/call", {"name": "delete_customer"}, request_id="abc")
    verdict = await Pipeline([stage()]).run(ctx)
    response = error_response(ctx.message.id, verdict.code, verdict.error_message, verdict.data)
    assert response.payload == {"jsonrpc": "2.0", "id": "abc", "error": {
        "code": -31001, "message": "Denied by policy", "data": {"reason": "policy_denied"}}}
    assert verdict.stage == "authorize"


async def test_argument_rule_is_enforced_on_the_request() -> None:
    ok = c2s_request(SUPPORT, "tools/call", {"name": "send_message", "arguments": {"to": "a@example.com"}})
    bad = c2s_request(SUPPORT, "tools/call", {"name": "send_message", "arguments": {"to": "a@evil.test"}})
    assert not (await stage().process(ok)).rejected
    assert (await stage().process(bad)).rejected


@pytest.mark.parametrize(
    ("ref", "allowed"),
    [
        ({"type": "ref/prompt", "name": "summarize_customer"}, True),
        ({"type": "ref/resource", "uri": "customers://{customer_id}"}, True),
        ({"type": "ref/resource", "uri": "customers://directory"}, False),
        # the attack: a denied URI with an allowed prompt's name added used to be authorized by the name
        ({"type": "ref/resource", "uri": "customers://directory", "name": "summarize_customer"}, False),
        ({"type": "ref/prompt", "name": "summarize_customer", "uri": "customers://directory"}, False),
        ({"type": "ref/other", "name": "summarize_customer"}, False),
        ({"name": "summarize_customer"}, False),
        (None, False),
    ],
)
async def test_completion_target_follows_ref_type(ref: Any, allowed: bool) -> None:
    ctx = c2s_request(ANALYST, "completion/complete", {"ref": ref, "argument": {"name": "customer_id", "value": "C"}})
    verdict = await stage().process(ctx)
    assert verdict.rejected is not allowed
    if not allowed and ctx.target is None:
        assert ctx.decision == Decision(False, "invalid_target", None)


@pytest.mark.parametrize("params", [{}, {"name": 5}, {"arguments": {}}])
async def test_a_call_without_a_target_is_denied_without_consulting_the_rules(params: dict[str, Any]) -> None:
    """``p, role:admin, demo, *, *, allow`` would match an empty target; a malformed call is refused instead."""
    admin_stage = AuthorizeStage(Authorizer(snapshot("p, role:admin, demo, *, *, allow\n")))
    ctx = c2s_request(Principal("root", ("admin",)), "tools/call", params)
    verdict = await admin_stage.process(ctx)
    assert verdict.rejected and ctx.decision == Decision(False, "invalid_target", None)


@pytest.mark.parametrize(
    ("method", "params", "code", "message", "data"),
    [
        ("tools/call", {"name": "delete_customer"}, ErrorCode.INVALID_PARAMS, "Unknown tool: delete_customer", None),
        ("prompts/get", {"name": "secret_prompt"}, ErrorCode.INVALID_PARAMS, "Unknown prompt: secret_prompt", None),
        ("resources/read", {"uri": "secret://x"}, ErrorCode.INVALID_PARAMS, "Unknown resource: secret://x",
         {"uri": "secret://x"}),
        ("logging/setLevel", {"level": "debug"}, ErrorCode.METHOD_NOT_FOUND, "Method not found", None),
    ],
)
async def test_deny_as_unknown_looks_like_the_sdk_servers(method: str, params: dict[str, Any], code: int,
                                                          message: str, data: Any) -> None:
    ctx = c2s_request(ANALYST, method, params)
    verdict = await stage(deny_as_unknown=True).process(ctx)
    assert (verdict.code, verdict.error_message, verdict.data) == (code, message, data)
    assert ctx.decision is not None and not ctx.decision.allowed


@pytest.mark.parametrize(
    "method", ["initialize", "ping", "notifications/initialized", "notifications/cancelled",
               "notifications/progress", "notifications/roots/list_changed"],
)
async def test_protocol_plumbing_is_allowed_by_default(method: str) -> None:
    message = request(1, method, {}) if not method.startswith("notifications/") else notification(method, {})
    ctx = MessageContext(SessionInfo("s1", "demo", "127.0.0.1", ANONYMOUS), Direction.CLIENT_TO_SERVER, message,
                         method, None)
    assert not (await stage().process(ctx)).rejected
    assert ctx.decision is not None and ctx.decision.rule is not None and ctx.decision.rule.startswith("builtin:")


async def test_other_notifications_are_policed() -> None:
    message = notification("notifications/message", {"data": "x"})
    ctx = MessageContext(SessionInfo("s1", "demo", "127.0.0.1", ANALYST), Direction.CLIENT_TO_SERVER, message,
                         "notifications/message", None)
    assert (await stage().process(ctx)).rejected


async def test_policy_error_fails_closed() -> None:
    class Exploding:
        @property
        def snapshot(self) -> Any:
            raise RuntimeError("boom")

    ctx = c2s_request(ANALYST, "tools/call", {"name": "find_customer"})
    verdict = await AuthorizeStage(Authorizer(Exploding())).process(ctx)
    assert verdict.rejected and verdict.data == {"reason": "policy_error"}
    assert ctx.decision == Decision(False, "policy_error")


# -- server -> client ---------------------------------------------------------------------------

def s2c_request(principal: Principal, method: str, params: dict[str, Any]) -> MessageContext:
    message = request(99, method, params)
    record = RequestRecord(99, method, None, Direction.SERVER_TO_CLIENT, 0.0, params)
    return MessageContext(SessionInfo("s1", "demo", "127.0.0.1", principal), Direction.SERVER_TO_CLIENT, message,
                          method, None, record)


async def test_upstream_sampling_is_policed_by_the_sessions_principal() -> None:
    params = {"messages": [], "maxTokens": 200}
    assert not (await stage().process(s2c_request(SUPPORT, "sampling/createMessage", params))).rejected
    denied = await stage().process(s2c_request(ANALYST, "sampling/createMessage", params))
    assert denied.rejected and denied.code == ErrorCode.POLICY_DENIED
    too_big = await stage().process(s2c_request(SUPPORT, "sampling/createMessage", {**params, "maxTokens": 9999}))
    assert too_big.rejected


async def test_upstream_may_be_denied_roots_even_for_a_caller_who_may_do_much() -> None:
    assert (await stage().process(s2c_request(SUPPORT, "roots/list", {}))).rejected


async def test_server_ping_is_plumbing() -> None:
    assert not (await stage().process(s2c_request(ANALYST, "ping", {}))).rejected


async def test_client_response_to_a_server_request_is_allowed_unless_denied() -> None:
    message = Message(Kind.RESULT, {"jsonrpc": "2.0", "id": 99, "result": {"roots": []}})
    ctx = MessageContext(SessionInfo("s1", "demo", "127.0.0.1", ANALYST), Direction.CLIENT_TO_SERVER, message,
                         "roots/list", None)
    assert not (await stage().process(ctx)).rejected
    assert ctx.decision is not None and ctx.decision.rule == "builtin: p, *, *, response/**, *, allow"
    denying = AuthorizeStage(Authorizer(snapshot("p, *, demo, response/roots/list, *, deny\n")))
    assert (await denying.process(ctx)).rejected


async def test_modern_input_required_result_polices_each_input_request() -> None:
    result = {"resultType": "input_required", "requestState": "opaque",
              "inputRequests": {"s": {"method": "sampling/createMessage",
                                      "params": {"messages": [], "maxTokens": 100}}}}
    assert not (await stage().process(s2c_result(SUPPORT, "tools/call", result))).rejected
    assert (await stage().process(s2c_result(ANALYST, "tools/call", result))).rejected
    roots = {"resultType": "input_required", "inputRequests": {"r": {"method": "roots/list"}}}
    assert (await stage().process(s2c_result(SUPPORT, "tools/call", roots))).rejected
    malformed = {"resultType": "input_required", "inputRequests": ["not", "a", "map"]}
    assert (await stage().process(s2c_result(SUPPORT, "tools/call", malformed))).rejected


async def test_server_notifications_and_ordinary_results_pass() -> None:
    ctx = MessageContext(SessionInfo("s1", "demo", "127.0.0.1", ANALYST), Direction.SERVER_TO_CLIENT,
                         notification("notifications/message", {"level": "info", "data": "x"}),
                         "notifications/message", None)
    assert not (await stage().process(ctx)).rejected
    result = s2c_result(ANALYST, "tools/call", {"content": [], "isError": False})
    verdict = await stage().process(result)
    assert not verdict.rejected and verdict.message is None


# -- list filtering -----------------------------------------------------------------------------

def _tool(name: str) -> dict[str, Any]:
    return {"name": name, "description": f"{name} tool", "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": True}}


TOOLS_RESULT = {
    "tools": [_tool(n) for n in ("find_customer", "list_customers", "get_customer", "send_message",
                                 "delete_customer", "echo")],
    "nextCursor": "cursor-page-2",
    "_meta": {"x": 1},
}


async def test_tools_list_is_filtered_and_the_cursor_kept() -> None:
    original = copy.deepcopy(TOOLS_RESULT)
    ctx = s2c_result(ANALYST, "tools/list", TOOLS_RESULT)
    verdict = await stage().process(ctx)
    assert verdict.message is not None
    result = verdict.message.result
    assert [t["name"] for t in result["tools"]] == ["find_customer", "list_customers"]
    assert result["tools"][0] == _tool("find_customer")
    assert result["nextCursor"] == "cursor-page-2" and result["_meta"] == {"x": 1}
    assert verdict.message.payload["id"] == 7
    assert TOOLS_RESULT == original, "the upstream's payload must not be mutated in place"
    assert ctx.decision is not None and ctx.decision.reason == "list_filtered"


async def test_conditionally_allowed_tools_stay_listed() -> None:
    verdict = await stage().process(s2c_result(SUPPORT, "tools/list", TOOLS_RESULT))
    assert verdict.message is not None
    assert [t["name"] for t in verdict.message.result["tools"]] == ["find_customer", "list_customers",
                                                                    "send_message"]


async def test_second_page_is_filtered_too() -> None:
    page2 = {"tools": [_tool("delete_customer"), _tool("find_customer")]}
    verdict = await stage().process(s2c_result(ANALYST, "tools/list", page2))
    assert verdict.message is not None
    assert verdict.message.result == {"tools": [_tool("find_customer")]}


async def test_nothing_hidden_means_nothing_rewritten() -> None:
    verdict = await stage().process(s2c_result(ANALYST, "tools/list", {"tools": [_tool("find_customer")]}))
    assert verdict.message is None


async def test_no_role_sees_an_empty_list_with_cursor() -> None:
    verdict = await stage().process(s2c_result(Principal("mallory"), "tools/list", TOOLS_RESULT))
    assert verdict.message is not None
    assert verdict.message.result["tools"] == [] and verdict.message.result["nextCursor"] == "cursor-page-2"


async def test_malformed_tool_entries_are_dropped() -> None:
    result = {"tools": [_tool("find_customer"), "find_customer", {"name": 5}, {"description": "no name"},
                        _tool("find_customer\n")]}
    verdict = await stage().process(s2c_result(ANALYST, "tools/list", result))
    assert verdict.message is not None
    assert verdict.message.result["tools"] == [_tool("find_customer")]


async def test_prompts_resources_and_templates_are_filtered() -> None:
    prompts = {"prompts": [{"name": "summarize_customer", "arguments": [{"name": "customer_id"}]},
                           {"name": "secret_prompt"}], "nextCursor": "p2"}
    v = await stage().process(s2c_result(ANALYST, "prompts/list", prompts))
    assert v.message is not None
    assert v.message.result == {"prompts": [prompts["prompts"][0]], "nextCursor": "p2"}

    resources = {"resources": [{"uri": "customers://directory", "name": "customer-directory"},
                               {"uri": "customers://C001", "name": "c1"},
                               {"uri": "secret://x", "name": "s"}]}
    v = await stage().process(s2c_result(ANALYST, "resources/list", resources))
    assert v.message is not None
    assert [r["uri"] for r in v.message.result["resources"]] == ["customers://C001"]

    templates = {"resourceTemplates": [{"uriTemplate": "customers://{customer_id}", "name": "customer-record"},
                                       {"uriTemplate": "secret://{id}", "name": "s"}], "nextCursor": "t2"}
    v = await stage().process(s2c_result(ANALYST, "resources/templates/list", templates))
    assert v.message is not None
    assert v.message.result == {"resourceTemplates": [templates["resourceTemplates"][0]], "nextCursor": "t2"}


async def test_error_responses_to_lists_pass_untouched() -> None:
    message = Message(Kind.ERROR, {"jsonrpc": "2.0", "id": 7, "error": {"code": -32603, "message": "x"}})
    ctx = MessageContext(SessionInfo("s1", "demo", "127.0.0.1", ANALYST), Direction.SERVER_TO_CLIENT, message,
                         "tools/list", None)
    verdict = await stage().process(ctx)
    assert not verdict.rejected and verdict.message is None


# -- helpers and construction --------------------------------------------------------------------

def test_arguments_of() -> None:
    assert arguments_of("tools/call", {"name": "t", "arguments": {"a": 1}}) == {"a": 1}
    assert arguments_of("tools/call", {"name": "t", "arguments": "junk"}) == {}
    assert arguments_of("prompts/get", {"name": "p"}) == {}
    assert arguments_of("completion/complete", {"argument": {"name": "n", "value": "v"}}) == {"name": "n",
                                                                                             "value": "v"}
    assert arguments_of("sampling/createMessage", {"maxTokens": 5, "_meta": {"k": 1}}) == {"maxTokens": 5}


async def test_from_settings_loads_and_watches(tmp_path: Path) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text((POLICIES / "policy.csv").read_text(), encoding="utf-8")
    built = AuthorizeStage.from_settings(PolicySettings(policy=policy, reload_interval=0.05))
    assert built.store is not None
    await built.start()
    try:
        assert built.store.status()["watching"]
        ctx = c2s_request(ANALYST, "tools/call", {"name": "find_customer", "arguments": {"query": "x"}})
        assert not (await built.process(ctx)).rejected
    finally:
        await built.aclose()
    assert not built.store.status()["watching"]
    with pytest.raises(ValueError):
        AuthorizeStage.from_settings(PolicySettings())


# -- tokens are judged as the values they open to ------------------------------------------------

def _token_stage(policy: str) -> tuple[AuthorizeStage, Any]:
    from guard.crypto.aead import KeyRing
    from guard.pii.opening import TokenOpener
    from guard.pii.rules import ActionSpec
    from guard.pii.tokens import apply_action, binding_for
    from guard.policy.conditions import UNDECIDABLE

    ring = KeyRing("k1", {"k1": bytes(range(32))})
    view = TokenOpener(ring, "dep", bind_tenant=False, bind_principal=True, undecidable=UNDECIDABLE)

    def mint(value: str, principal: Principal) -> str:
        binding = binding_for("dep", principal, bind_tenant=False, bind_principal=True)
        return apply_action(ActionSpec("tokenize"), "EMAIL_ADDRESS", value, ring, binding)

    return AuthorizeStage(Authorizer(snapshot(policy)), argument_view=view), mint


async def test_token_is_judged_as_the_value_it_opens_to() -> None:
    stage_, mint = _token_stage(POLICY)

    async def send(to: str, who: Principal = SUPPORT) -> MessageContext:
        ctx = c2s_request(who, "tools/call", {"name": "send_message", "arguments": {"to": to}})
        await stage_.process(ctx)
        return ctx

    assert (await send(mint("ada@example.com", SUPPORT))).decision.allowed  # type: ignore[union-attr]
    assert not (await send(mint("attacker@evil.example", SUPPORT))).decision.allowed  # type: ignore[union-attr]
    other = Principal(subject="carl", roles=("support",))
    foreign = await send(mint("ada@example.com", other))  # minted for carl, used by bob: does not open
    assert foreign.decision == Decision(False, "default_deny", None)
    assert "<pii:" in foreign.message.params["arguments"]["to"], "the view is never forwarded"


async def test_a_token_that_does_not_open_makes_a_deny_apply() -> None:
    stage_, mint = _token_stage("p, role:admin, demo, *, *, allow\n"
                                "p, *, demo, tools/call, delete_customer, deny, customer_id ~== C001\n")
    admin, other = Principal("root", ("admin",)), Principal("eve", ("admin",))
    ctx = c2s_request(admin, "tools/call", {"name": "delete_customer",
                                            "arguments": {"customer_id": mint("C002", other)}})
    assert (await stage_.process(ctx)).rejected
    assert ctx.decision is not None and ctx.decision.reason == "undecidable_condition"
    ctx = c2s_request(admin, "tools/call", {"name": "delete_customer",
                                            "arguments": {"customer_id": mint(" c001", admin)}})
    assert (await stage_.process(ctx)).rejected and ctx.decision.reason == "explicit_deny"  # type: ignore[union-attr]


async def test_a_failing_argument_view_fails_closed() -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("boom")

    stage_ = AuthorizeStage(Authorizer(snapshot(POLICY)), argument_view=broken)
    ctx = c2s_request(SUPPORT, "tools/call", {"name": "send_message", "arguments": {"to": "a@example.com"}})
    assert (await stage_.process(ctx)).rejected
    ok = c2s_request(SUPPORT, "tools/call", {"name": "find_customer", "arguments": {"query": "x"}})
    assert not (await stage_.process(ok)).rejected  # unconditional rules do not read the arguments

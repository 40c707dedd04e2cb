"""End to end: Casbin authorization in a real guard, with the official SDK 2.x client and the demo server.

A real JWT (roles from its claims) connects over WebSocket to guard on loopback; guard relays to
the bundled demo server over stdio, which records every request it receives
(``GUARD_DEMO_RECORD``), so the tests can prove that a denied call never reached the upstream.
Both protocol eras run: legacy (``initialize``, real server->client requests) and 2026-07-28
(``InputRequiredResult`` carrying the server's requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from guard import devkeys
from guard.auth.cli import mint_dev_token
from guard.client import websocket_client
from guard.config import parse
from guard.demo.server import read_record
from guard.runtime import build_runtime
from tests.e2e.clients import direct
from tests.support.guard_server import running_runtime

pytestmark = pytest.mark.e2e

AUD = "https://guard.test"
ISS = "guard-policy-e2e"
MODES = ["legacy", "2026-07-28"]

POLICY = """\
p, role:analyst, demo, tools/list, *, allow
p, role:analyst, demo, tools/call, find_customer, allow
p, role:analyst, demo, tools/call, draft_message, allow
p, role:analyst, demo, tools/call, list_client_roots, allow
p, role:analyst, demo, resources/list, *, allow
p, role:analyst, demo, resources/templates/list, *, allow
p, role:analyst, demo, resources/read, customers://*, allow
p, role:analyst, demo, prompts/list, *, allow
p, role:analyst, demo, prompts/get, summarize_customer, allow
p, role:analyst, demo, sampling/createMessage, *, allow, maxTokens <= 1000
p, role:analyst, demo, resources/read, customers://directory, deny
"""
# roots/list has no allow rule: the demo upstream may not ask this client for its roots.


@pytest.fixture(scope="module")
def dev_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[devkeys.DevSigningKey, Path]:
    directory = tmp_path_factory.mktemp("keys")
    devkeys.generate_dev_keys(directory)
    return devkeys.load_dev_signing_key(directory), directory / devkeys.AUTH_JWKS


def token(dev_key: tuple[devkeys.DevSigningKey, Path], *roles: str) -> dict[str, str]:
    value = mint_dev_token(dev_key[0], subject="alice", roles=roles, ttl=300, issuer=ISS, audience=(AUD,))
    return {"Authorization": f"Bearer {value}"}


def config(jwks: Path, policy: Path, record: Path, **policy_settings: Any) -> dict[str, Any]:
    return {
        "upstreams": {"demo": {"command": sys.executable, "args": ["-m", "guard.demo"],
                               "env": {"GUARD_DEMO_RECORD": str(record)}}},
        "auth": {"audience": AUD, "issuers": [{"issuer": ISS, "algorithms": ["ES256"], "public_keys": [str(jwks)]}]},
        "policy": {"policy": str(policy), "reload_interval": 0.2, **policy_settings},
    }


@contextlib.asynccontextmanager
async def guard(cfg: dict[str, Any]) -> AsyncIterator[str]:
    async with running_runtime(build_runtime(parse(cfg))) as base:
        yield f"{base}/mcp/demo"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "policy.csv"
    policy.write_text(POLICY, encoding="utf-8")
    return policy, tmp_path / "record.jsonl"


def called_tools(record: Path) -> list[str]:
    return [entry["name"] for entry in read_record(record) if entry["method"] == "tools/call"]


@pytest.mark.parametrize("mode", MODES)
async def test_allowed_denied_and_filtered_through_guard(mode: str, dev_key: Any, files: tuple[Path, Path]) -> None:
    policy, record = files
    script = {"steps": [
        {"op": "list_tools"},
        {"op": "list_resources"},
        {"op": "list_resource_templates"},
        {"op": "list_prompts"},
        {"op": "call_tool", "name": "find_customer", "arguments": {"query": "Lovelace"}},
        {"op": "call_tool", "name": "delete_customer", "arguments": {"customer_id": "C002"}},
        {"op": "read_resource", "uri": "customers://C002"},
        {"op": "read_resource", "uri": "customers://directory"},
        {"op": "get_prompt", "name": "summarize_customer", "arguments": {"customer_id": "C001"}},
    ]}
    async with guard(config(dev_key[1], policy, record)) as url:
        via = await direct.run_script(websocket_client(url, headers=token(dev_key, "analyst")), script, mode=mode)
    assert "error" not in via, via
    results = via["results"]

    tools = {tool["name"] for tool in results[0]["result"]["tools"]}
    assert tools == {"find_customer", "draft_message", "list_client_roots"}
    assert {r["uri"] for r in results[1]["result"]["resources"]} == set()  # only customers://directory exists
    assert [t["uriTemplate"] for t in results[2]["result"]["resourceTemplates"]] == ["customers://{customer_id}"]
    assert [p["name"] for p in results[3]["result"]["prompts"]] == ["summarize_customer"]

    assert "result" in results[4] and not results[4]["result"].get("isError")
    assert results[5]["error"] == {"code": -31001, "message": "Denied by policy", "data": {"reason": "policy_denied"}}
    assert "result" in results[6]
    assert results[7]["error"]["code"] == -31001
    assert "result" in results[8]

    received = read_record(record)
    assert "find_customer" in called_tools(record)
    assert "delete_customer" not in called_tools(record), "a denied call reached the upstream"
    assert "customers://directory" not in {e.get("uri") for e in received if e["method"] == "resources/read"}


@pytest.mark.parametrize("mode", MODES)
async def test_upstream_requests_are_policed(mode: str, dev_key: Any, files: tuple[Path, Path]) -> None:
    """Sampling is allowed for this caller, roots/list is not: the client never sees a roots request."""
    policy, record = files
    script = {"steps": [
        {"op": "call_tool", "name": "draft_message", "arguments": {"customer_id": "C001", "topic": "renewal"}},
        {"op": "call_tool", "name": "list_client_roots"},
    ]}
    async with guard(config(dev_key[1], policy, record)) as url:
        via = await direct.run_script(websocket_client(url, headers=token(dev_key, "analyst")), script, mode=mode)
    assert "error" not in via, via
    methods = [r["method"] for r in via["requests"]]
    assert "sampling/createMessage" in methods
    assert "roots/list" not in methods
    draft, roots = via["results"]
    assert "result" in draft and not draft["result"].get("isError"), draft
    # legacy: the upstream's roots/list got -31001 and the tool failed; modern: the input_required result was refused
    assert roots.get("error", {}).get("code") == -31001 or roots["result"].get("isError") is True, roots


async def test_deny_as_unknown_presents_denials_as_unknown_tools(dev_key: Any, files: tuple[Path, Path]) -> None:
    policy, record = files
    script = [{"op": "call_tool", "name": "delete_customer", "arguments": {"customer_id": "C002"}}]
    async with guard(config(dev_key[1], policy, record, deny_as_unknown=True)) as url:
        via = await direct.run_script(websocket_client(url, headers=token(dev_key, "analyst")), script, mode="legacy")
    assert via["results"][0]["error"]["code"] == -32602
    assert via["results"][0]["error"]["message"] == "Unknown tool: delete_customer"
    assert "delete_customer" not in called_tools(record)


async def test_roles_come_from_the_token(dev_key: Any, files: tuple[Path, Path]) -> None:
    policy, record = files
    script = [{"op": "call_tool", "name": "find_customer", "arguments": {"query": "x"}}]
    async with guard(config(dev_key[1], policy, record)) as url:
        no_role = await direct.run_script(websocket_client(url, headers=token(dev_key)), script, mode="legacy")
        other = await direct.run_script(websocket_client(url, headers=token(dev_key, "analyst,admin")), script,
                                        mode="legacy")
    assert no_role["results"][0]["error"]["code"] == -31001
    assert other["results"][0]["error"]["code"] == -31001
    assert called_tools(record) == []


async def test_policy_edit_applies_to_an_open_session_without_reconnecting(dev_key: Any,
                                                                         files: tuple[Path, Path]) -> None:
    policy, record = files
    async with guard(config(dev_key[1], policy, record)) as url:
        transport = websocket_client(url, headers=token(dev_key, "analyst"))
        async with direct.connect(transport, mode="legacy") as session:
            denied = await direct.call_tool(session, "list_customers", None)
            assert denied["error"]["code"] == -31001
            tmp = policy.with_suffix(".tmp")
            tmp.write_text(POLICY + "p, role:analyst, demo, tools/call, list_customers, allow\n", encoding="utf-8")
            os.replace(tmp, policy)
            started = time.monotonic()
            while True:
                result = await direct.call_tool(session, "list_customers", None)
                if "error" not in result:
                    break
                assert time.monotonic() - started < 2.0, "policy edit not applied within 2 s"
                await asyncio.sleep(0.1)
            # a broken edit keeps the policy that is in force, on the same connection
            policy.write_text("p, role:analyst, demo, tools/call\n", encoding="utf-8")
            await asyncio.sleep(0.8)
            still = await direct.call_tool(session, "list_customers", None)
            assert "error" not in still
    assert called_tools(record).count("list_customers") >= 2


SHIPPED_POLICY = Path(__file__).resolve().parents[2] / "policies" / "policy.csv"


async def test_legal_hold_holds_for_case_and_whitespace_variants_on_the_wire(dev_key: Any,
                                                                             files: tuple[Path, Path]) -> None:
    """The shipped legal hold, through a real guard: an admin's ``delete_customer`` for any spelling the
    demo server reads as C001 (it strips and upper-cases ids), or a value guard cannot judge, never
    reaches the upstream; C002 does."""
    _, record = files
    variants: list[Any] = ["C001", "c001", " C001", "C001\t", ["C001"], None]
    script = [{"op": "call_tool", "name": "delete_customer", "arguments": {"customer_id": v}} for v in variants]
    script.append({"op": "call_tool", "name": "delete_customer", "arguments": {}})
    script.append({"op": "call_tool", "name": "delete_customer", "arguments": {"customer_id": "c002"}})
    async with guard(config(dev_key[1], SHIPPED_POLICY, record)) as url:
        via = await direct.run_script(websocket_client(url, headers=token(dev_key, "admin")), script, mode="legacy")
    assert "error" not in via, via
    *held, allowed = via["results"]
    for result in held:
        assert result["error"]["code"] == -31001, result
    assert "result" in allowed and not allowed["result"].get("isError"), allowed
    deleted = [e["arguments"] for e in read_record(record) if e.get("name") == "delete_customer"]
    assert deleted == [{"customer_id": "c002"}], "a held customer's deletion reached the upstream"


@contextlib.asynccontextmanager
async def raw_session(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """A WebSocket speaking raw JSON-RPC frames (no SDK in between to reshape what is sent)."""
    async with connect(url, subprotocols=["mcp"], additional_headers=headers, open_timeout=10) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}))
        assert "result" in json.loads(await asyncio.wait_for(ws.recv(), 30))
        await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        yield ws


async def call(ws: Any, request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame.get("id") == request_id:
            return dict(frame)


async def test_completion_for_a_denied_uri_is_not_authorized_by_an_allowed_prompt_name(
        dev_key: Any, files: tuple[Path, Path]) -> None:
    """A ``ref/resource`` for a URI the caller may not complete, with an allowed prompt's ``name`` added,
    used to be authorized by the name and forwarded; the target now follows ``ref.type``."""
    policy, record = files
    policy.write_text("p, role:analyst, demo, completion/complete, summarize_customer, allow\n", encoding="utf-8")
    argument = {"name": "customer_id", "value": "C"}
    async with guard(config(dev_key[1], policy, record)) as url, raw_session(url, token(dev_key, "analyst")) as ws:
        attack = await call(ws, 1, "completion/complete", {
            "ref": {"type": "ref/resource", "uri": "customers://{customer_id}", "name": "summarize_customer"},
            "argument": argument})
        unknown = await call(ws, 2, "completion/complete", {
            "ref": {"type": "ref/anything", "name": "summarize_customer"}, "argument": argument})
        plain = await call(ws, 3, "completion/complete", {
            "ref": {"type": "ref/resource", "uri": "customers://{customer_id}"}, "argument": argument})
        allowed = await call(ws, 4, "completion/complete", {
            "ref": {"type": "ref/prompt", "name": "summarize_customer"}, "argument": argument})
    for denied in (attack, unknown, plain):
        assert denied["error"]["code"] == -31001, denied
    assert "error" not in allowed or allowed["error"]["code"] != -31001, allowed
    received = [e["params"]["ref"] for e in read_record(record) if e["method"] == "completion/complete"]
    assert received == [{"type": "ref/prompt", "name": "summarize_customer"}]


async def test_dot_segment_uri_is_never_forwarded_as_something_else(dev_key: Any, files: tuple[Path, Path]) -> None:
    """``customers://C002/notes/../../directory`` used to be checked as ``customers://C002/directory`` (allowed)
    and forwarded raw. guard now refuses URIs with dot segments, so what is checked is what is forwarded."""
    policy, record = files
    policy.write_text("p, role:analyst, demo, resources/read, customers://*, allow\n"
                      "p, role:analyst, demo, resources/read, customers://C002/**, allow\n"
                      "p, role:analyst, demo, resources/read, customers://directory, deny\n", encoding="utf-8")
    attacks = ["customers://C002/notes/../../directory", "customers://C002/%2e%2e/directory",
               "customers://C002/..%2F..%2Fdirectory", "customers://C002/%252e%252e/directory",
               "customers://C002/./x"]
    async with guard(config(dev_key[1], policy, record)) as url, raw_session(url, token(dev_key, "analyst")) as ws:
        answers = [await call(ws, i, "resources/read", {"uri": uri}) for i, uri in enumerate(attacks, start=1)]
        allowed = await call(ws, 99, "resources/read", {"uri": "customers://C002"})
    for answer in answers:
        assert answer["error"]["code"] == -31001, answer
    assert "result" in allowed, allowed
    received = [e["uri"] for e in read_record(record) if e["method"] == "resources/read"]
    assert received == ["customers://C002"], "the upstream received a URI other than the one authorized"


async def test_second_issuers_admin_role_does_not_match_first_issuers_rules_on_the_wire(
        dev_key: Any, files: tuple[Path, Path], tmp_path: Path) -> None:
    """Two trusted issuers: the partner's token for sub 'alice' with role 'admin' is user:partner/alice,
    role:partner/admin, so it matches neither the home issuer's alice nor the admin rules."""
    policy, record = files
    policy.write_text("p, role:admin, demo, *, *, allow\n"
                      "p, *, demo, tools/list, *, allow\n"
                      "p, user:alice, demo, tools/call, echo, allow\n", encoding="utf-8")
    partner_dir = tmp_path / "partner-keys"
    devkeys.generate_dev_keys(partner_dir)
    partner_key = devkeys.load_dev_signing_key(partner_dir)
    cfg = config(dev_key[1], policy, record)
    cfg["auth"]["issuers"].append({"issuer": "https://partner.test", "alias": "partner", "algorithms": ["ES256"],
                                   "public_keys": [str(partner_dir / devkeys.AUTH_JWKS)]})
    partner = mint_dev_token(partner_key, subject="alice", roles=("admin",), ttl=300, issuer="https://partner.test",
                             audience=(AUD,))
    script = [{"op": "call_tool", "name": "echo", "arguments": {"text": "hi"}},
              {"op": "call_tool", "name": "delete_customer", "arguments": {"customer_id": "C002"}}]
    async with guard(cfg) as url:
        theirs = await direct.run_script(websocket_client(url, headers={"Authorization": f"Bearer {partner}"}),
                                         script, mode="legacy")
        ours = await direct.run_script(websocket_client(url, headers=token(dev_key)), script[:1], mode="legacy")
    assert [r["error"]["code"] for r in theirs["results"]] == [-31001, -31001], theirs
    assert "result" in ours["results"][0], ours
    assert called_tools(record) == ["echo"], "the partner issuer's principal reached the upstream"

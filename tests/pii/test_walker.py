"""The walker visits every place user data lives (both directions) and nothing structural."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from guard.jsonrpc import Kind
from guard.pii.walker import transform

V = "v@example.com"


def run(payload: dict[str, Any], kind: Kind, method: str | None, to_client: bool,
        scan_blobs: bool = False) -> tuple[dict[str, Any], list[str]]:
    seen: list[str] = []

    def visit(text: str, path: str) -> str:
        seen.append(path)
        return text.replace(V, "X") if V in text else text

    return transform(payload, kind, method, to_client, visit, scan_blobs), seen


def req(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def res(result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "result": result}


def note(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


# (name, payload, kind, method, to_client, path that must be visited and rewritten)
POSITIONS = [
    ("tool arguments", req("tools/call", {"name": "t", "arguments": {"to": V}}), Kind.REQUEST, "tools/call",
     False, "$.params.arguments.to"),
    ("nested tool arguments", req("tools/call", {"name": "t", "arguments": {"a": [{"b": {"c": V}}]}}),
     Kind.REQUEST, "tools/call", False, "$.params.arguments.a[0].b.c"),
    ("result text block", res({"content": [{"type": "text", "text": V}]}), Kind.RESULT, "tools/call", True,
     "$.result.content[0].text"),
    ("embedded resource text", res({"content": [{"type": "resource", "resource": {"uri": "r://1", "text": V}}]}),
     Kind.RESULT, "tools/call", True, "$.result.content[0].resource.text"),
    ("embedded resource uri", res({"content": [{"type": "resource", "resource": {"uri": f"mailto:{V}"}}]}),
     Kind.RESULT, "tools/call", True, "$.result.content[0].resource.uri"),
    ("resource link uri", res({"content": [{"type": "resource_link", "uri": f"crm://{V}", "name": "n"}]}),
     Kind.RESULT, "tools/call", True, "$.result.content[0].uri"),
    ("resource link name", res({"content": [{"type": "resource_link", "uri": "u", "name": V}]}),
     Kind.RESULT, "tools/call", True, "$.result.content[0].name"),
    ("resource link title", res({"content": [{"type": "resource_link", "uri": "u", "name": "n", "title": V}]}),
     Kind.RESULT, "tools/call", True, "$.result.content[0].title"),
    ("resource link description",
     res({"content": [{"type": "resource_link", "uri": "u", "name": "n", "description": V}]}),
     Kind.RESULT, "tools/call", True, "$.result.content[0].description"),
    ("structuredContent", res({"content": [], "structuredContent": {"rows": [{"email": V}]}}), Kind.RESULT,
     "tools/call", True, "$.result.structuredContent.rows[0].email"),
    ("prompts/get arguments", req("prompts/get", {"name": "p", "arguments": {"who": V}}), Kind.REQUEST,
     "prompts/get", False, "$.params.arguments.who"),
    ("prompt result message", res({"messages": [{"role": "user", "content": {"type": "text", "text": V}}]}),
     Kind.RESULT, "prompts/get", True, "$.result.messages[0].content.text"),
    ("prompt result description", res({"description": V, "messages": []}), Kind.RESULT, "prompts/get", True,
     "$.result.description"),
    ("resources/read uri", req("resources/read", {"uri": f"crm://{V}"}), Kind.REQUEST, "resources/read", False,
     "$.params.uri"),
    ("resources/read contents", res({"contents": [{"uri": "r://1", "text": V}]}), Kind.RESULT, "resources/read",
     True, "$.result.contents[0].text"),
    ("completion argument", req("completion/complete", {"ref": {"type": "ref/prompt", "name": "p"},
                                                         "argument": {"name": "a", "value": V}}),
     Kind.REQUEST, "completion/complete", False, "$.params.argument.value"),
    ("completion context", req("completion/complete", {"ref": {"type": "ref/prompt", "name": "p"},
                                                        "argument": {"name": "a", "value": "x"},
                                                        "context": {"arguments": {"b": V}}}),
     Kind.REQUEST, "completion/complete", False, "$.params.context.arguments.b"),
    ("completion values", res({"completion": {"values": ["a", V]}}), Kind.RESULT, "completion/complete", True,
     "$.result.completion.values[1]"),
    ("sampling request message", req("sampling/createMessage", {
        "messages": [{"role": "user", "content": {"type": "text", "text": V}}], "maxTokens": 5}),
     Kind.REQUEST, "sampling/createMessage", True, "$.params.messages[0].content.text"),
    ("sampling system prompt", req("sampling/createMessage", {"messages": [], "systemPrompt": V, "maxTokens": 5}),
     Kind.REQUEST, "sampling/createMessage", True, "$.params.systemPrompt"),
    ("sampling client result", res({"role": "assistant", "model": "m", "content": {"type": "text", "text": V}}),
     Kind.RESULT, "sampling/createMessage", False, "$.result.content.text"),
    ("elicitation message", req("elicitation/create", {"message": V, "requestedSchema": {"type": "object"}}),
     Kind.REQUEST, "elicitation/create", True, "$.params.message"),
    ("elicitation schema default", req("elicitation/create", {
        "message": "m", "requestedSchema": {"type": "object", "properties": {"e": {"type": "string", "default": V}}}}),
     Kind.REQUEST, "elicitation/create", True, "$.params.requestedSchema.properties.e.default"),
    ("elicitation client content", res({"action": "accept", "content": {"email": V}}), Kind.RESULT,
     "elicitation/create", False, "$.result.content.email"),
    ("roots client result", res({"roots": [{"uri": f"file:///home/{V}", "name": "r"}]}), Kind.RESULT, "roots/list",
     False, "$.result.roots[0].uri"),
    ("log notification data", note("notifications/message", {"level": "info", "data": {"user": V}}),
     Kind.NOTIFICATION, "notifications/message", True, "$.params.data.user"),
    ("log notification string data", note("notifications/message", {"level": "info", "data": V}),
     Kind.NOTIFICATION, "notifications/message", True, "$.params.data"),
    ("progress message", note("notifications/progress", {"progressToken": 1, "progress": 1, "message": V}),
     Kind.NOTIFICATION, "notifications/progress", True, "$.params.message"),
    ("modern inputRequests", res({"resultType": "input_required", "requestState": "s", "inputRequests": {
        "ask": {"method": "elicitation/create", "params": {"message": V, "requestedSchema": {}}}}}),
     Kind.RESULT, "tools/call", True, "$.result.inputRequests.ask.params.message"),
    ("modern inputRequests sampling", res({"resultType": "input_required", "inputRequests": {
        "s": {"method": "sampling/createMessage", "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": V}}], "maxTokens": 1}}}}),
     Kind.RESULT, "tools/call", True, "$.result.inputRequests.s.params.messages[0].content.text"),
    ("modern inputResponses elicitation", req("tools/call", {"name": "t", "arguments": {}, "requestState": "s",
                                                             "inputResponses": {"ask": {"action": "accept",
                                                                                        "content": {"e": V}}}}),
     Kind.REQUEST, "tools/call", False, "$.params.inputResponses.ask.content.e"),
    ("modern inputResponses sampling", req("tools/call", {"name": "t", "inputResponses": {
        "s": {"role": "assistant", "model": "m", "content": {"type": "text", "text": V}}}}),
     Kind.REQUEST, "tools/call", False, "$.params.inputResponses.s.content.text"),
    ("error message", {"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": V}}, Kind.ERROR, "tools/call",
     True, "$.error.message"),
    ("error data", {"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": "m", "data": {"e": V}}},
     Kind.ERROR, "tools/call", True, "$.error.data.e"),
    ("unknown method params", req("vendor/thing", {"x": V}), Kind.REQUEST, "vendor/thing", False, "$.params.x"),
    ("sampling tool_result content", res({"role": "assistant", "model": "m", "content": [
        {"type": "tool_result", "toolUseId": "1", "content": [{"type": "text", "text": V}]}]}),
     Kind.RESULT, "sampling/createMessage", False, "$.result.content[0].content[0].text"),
    ("embedded JSON text", res({"content": [{"type": "text", "text": json.dumps({"rows": [{"email": V}]})}]}),
     Kind.RESULT, "tools/call", True, "$.result.content[0].text<json>.rows[0].email"),
    ("JSON inside JSON inside text", res({"content": [{"type": "text", "text": json.dumps(
        {"payload": json.dumps({"user": {"email": V}})})}]}),
     Kind.RESULT, "tools/call", True, "$.result.content[0].text<json>.payload<json>.user.email"),
    ("odd key", req("tools/call", {"name": "t", "arguments": {"e mail": V}}), Kind.REQUEST, "tools/call", False,
     '$.params.arguments["e mail"]'),
]


@pytest.mark.parametrize(("name", "payload", "kind", "method", "to_client", "path"), POSITIONS,
                         ids=[p[0] for p in POSITIONS])
def test_every_user_data_position_is_visited_and_rewritten(
        name: str, payload: dict[str, Any], kind: Kind, method: str, to_client: bool, path: str) -> None:
    original = copy.deepcopy(payload)
    out, seen = run(payload, kind, method, to_client)
    assert path in seen
    assert V not in json.dumps(out)
    assert payload == original, "the input payload must not be mutated"


def test_structural_fields_are_never_visited() -> None:
    payload = res({
        "_meta": {"note": V},
        "content": [
            {"type": "text", "text": "ok", "annotations": {"audience": [V]}, "_meta": {"x": V}},
            {"type": "image", "data": base64.b64encode(V.encode()).decode(), "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "r://1", "blob": base64.b64encode(V.encode()).decode()}},
        ],
        "structuredContent": {"count": 3, "ok": True, "none": None, "_meta": {"x": V}, V: "key is kept"},
        "isError": False,
    })
    out, seen = run(payload, Kind.RESULT, "tools/call", True)
    assert out is payload
    assert seen == ["$.result.content[0].text", "$.result.content[2].resource.uri",
                    '$.result.structuredContent["v@example.com"]']


def test_request_state_ids_and_meta_untouched() -> None:
    payload = req("tools/call", {"name": V, "requestState": V, "_meta": {"io.modelcontextprotocol/protocolVersion": V},
                                 "arguments": {"n": 5, "b": True, "_meta": V}})
    payload["id"] = V
    out, seen = run(payload, Kind.REQUEST, "tools/call", False)
    assert out is payload and seen == []


def test_blobs_scanned_only_when_rules_say_so() -> None:
    blob = base64.b64encode(f"to: {V}".encode()).decode()
    payload = res({"contents": [{"uri": "r://1", "blob": blob}]})
    out, _ = run(payload, Kind.RESULT, "resources/read", True)
    assert out is payload
    out, seen = run(payload, Kind.RESULT, "resources/read", True, scan_blobs=True)
    assert seen == ["$.result.contents[0].uri", "$.result.contents[0].blob<base64>"]
    assert base64.b64decode(out["result"]["contents"][0]["blob"]) == b"to: X"


def test_methods_without_user_data_are_skipped() -> None:
    for method in ("tools/list", "initialize", "ping", "server/discover", "logging/setLevel"):
        payload = res({"tools": [{"name": "t", "description": V}]})
        out, seen = run(payload, Kind.RESULT, method, True)
        assert out is payload and seen == []
    out, seen = run(note("notifications/cancelled", {"requestId": 1, "reason": V}), Kind.NOTIFICATION,
                    "notifications/cancelled", True)
    assert seen == []


def test_embedded_json_reserialized_in_similar_style() -> None:
    pretty = json.dumps({"a": V, "n": 1.5, "ok": True}, indent=2)
    out, _ = run(res({"content": [{"type": "text", "text": pretty}]}), Kind.RESULT, "tools/call", True)
    text = out["result"]["content"][0]["text"]
    assert json.loads(text) == {"a": "X", "n": 1.5, "ok": True}
    assert text == json.dumps({"a": "X", "n": 1.5, "ok": True}, indent=2)
    compact = json.dumps({"a": V}, separators=(",", ":"))
    out, _ = run(res({"content": [{"type": "text", "text": compact}]}), Kind.RESULT, "tools/call", True)
    assert out["result"]["content"][0]["text"] == '{"a":"X"}'


def test_unchanged_embedded_json_keeps_original_text() -> None:
    text = '{ "a" :   "no pii here" }'
    payload = res({"content": [{"type": "text", "text": text}]})
    out, seen = run(payload, Kind.RESULT, "tools/call", True)
    assert out is payload and seen == ["$.result.content[0].text<json>.a"]


def test_text_that_only_looks_like_json_is_plain_text() -> None:
    out, seen = run(res({"content": [{"type": "text", "text": "{not json " + V + "}"}]}), Kind.RESULT,
                    "tools/call", True)
    assert seen == ["$.result.content[0].text"]
    assert out["result"]["content"][0]["text"] == "{not json X}"

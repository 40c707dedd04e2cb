"""The walker visits every place user data lives (both directions) and nothing structural."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.jsonrpc import Kind
from guard.pii.walker import MAX_DEPTH, Leaf, Unscannable, rewrite, transform, walk

V = "v@example.com"


def run(payload: dict[str, Any], kind: Kind = Kind.RESULT, method: str | None = "tools/call", to_client: bool = True,
        scan_blobs: bool = False) -> tuple[dict[str, Any], list[str]]:
    seen: list[str] = []

    def visit(leaf: Leaf) -> str | None:
        seen.append(leaf.path)
        return leaf.text.replace(V, "X") if V in leaf.text else None

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
    payload = {"jsonrpc": "2.0", "id": V, "result": {
        "_meta": {"io.modelcontextprotocol/protocolVersion": V, "progressToken": V},
        "resultType": V, "requestState": V, "nextCursor": V, "protocolVersion": V,
        "content": [{"type": "text", "mimeType": V, "text": "ok", "annotations": {"audience": [V], "priority": 1}}],
        "isError": False}}
    out, seen = run(payload)
    assert out is payload
    assert seen == ["$.result.content[0].text"]


def test_same_names_inside_user_data_are_scanned() -> None:
    args = {"type": V, "id": V, "method": V, "version": V, "_meta": {"x": V}}
    out, seen = run(req("tools/call", {"name": "t", "arguments": args}), Kind.REQUEST, "tools/call", False)
    assert V not in json.dumps(out)
    assert {"$.params.arguments.type", "$.params.arguments.id", "$.params.arguments._meta.x"} <= set(seen)


def test_request_state_ids_and_protocol_meta_untouched() -> None:
    payload = req("tools/call", {"name": "lookup", "requestState": V,
                                 "_meta": {"io.modelcontextprotocol/protocolVersion": V, "progressToken": V},
                                 "arguments": {"n": 5, "b": True}})
    payload["id"] = V
    out, seen = run(payload, Kind.REQUEST, "tools/call", False)
    assert out is payload and seen == ["$.params.name"]


LISTS = [
    ("tools/list", {"tools": [{"name": "t", "description": V, "inputSchema": {"type": "object", "properties": {
        "to": {"type": "string", "default": V, "examples": [V], "description": V}}}}]},
     ["$.result.tools[0].description", "$.result.tools[0].inputSchema.properties.to.default",
      "$.result.tools[0].inputSchema.properties.to.examples[0]"]),
    ("resources/list", {"resources": [{"uri": f"crm://{V}", "name": V, "description": V}]},
     ["$.result.resources[0].uri", "$.result.resources[0].name", "$.result.resources[0].description"]),
    ("resources/templates/list", {"resourceTemplates": [{"uriTemplate": "crm://{id}", "name": "c", "description": V}]},
     ["$.result.resourceTemplates[0].description"]),
    ("prompts/list", {"prompts": [{"name": "p", "description": V, "arguments": [{"name": "a", "description": V}]}]},
     ["$.result.prompts[0].description", "$.result.prompts[0].arguments[0].description"]),
    ("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "s", "version": "1"},
                    "instructions": V}, ["$.result.instructions"]),
    ("server/discover", {"supportedVersions": ["2026-07-28"], "instructions": V}, ["$.result.instructions"]),
]


@pytest.mark.parametrize(("method", "result", "paths"), LISTS, ids=[x[0] for x in LISTS])
def test_lists_and_initialize_results_are_protected(method: str, result: dict[str, Any], paths: list[str]) -> None:
    out, seen = run(res(result), Kind.RESULT, method, True)
    assert set(paths) <= set(seen)
    assert V not in json.dumps(out)


def test_schema_is_protected_in_place() -> None:
    schema = {"type": "object", "properties": {V: {"type": "string", "pattern": V, "default": V}},
              "required": [V]}
    out, _ = run(res({"tools": [{"name": "t", "inputSchema": schema}]}), Kind.RESULT, "tools/list", True)
    new = out["result"]["tools"][0]["inputSchema"]
    assert list(new["properties"]) == [V] and new["required"] == [V]  # the tool's interface is unchanged
    assert new["properties"][V] == {"type": "string", "pattern": V, "default": "X"}


def test_unknown_keys_keys_numbers_and_notifications_are_candidates() -> None:
    result = {"content": [{"type": "text", "text": "ok", "note": V}], "summary": V,
              "structuredContent": {V: {"card": 4111111111111111, "small": 12345}}}
    seen_leaves: list[Leaf] = []

    def visit(leaf: Leaf) -> str | None:
        seen_leaves.append(leaf)
        return "X" if V in leaf.text or leaf.text == "4111111111111111" else None

    out = transform(res(result), Kind.RESULT, "tools/call", True, visit)
    kinds = {(leaf.kind, leaf.path) for leaf in seen_leaves}
    assert ("text", "$.result.content[0].note") in kinds and ("text", "$.result.summary") in kinds
    assert ("key", "$.result.structuredContent{0}<key>") in kinds
    assert ("number", "$.result.structuredContent{0}.card") in kinds
    assert not any(leaf.text == "12345" for leaf in seen_leaves)
    assert out["result"]["structuredContent"] == {"X": {"card": "X", "small": 12345}}
    _, seen = run(note("notifications/cancelled", {"requestId": 1, "reason": V}), Kind.NOTIFICATION,
                  "notifications/cancelled", True)
    assert seen == ["$.params.reason"]


def test_protected_keys_stay_distinct() -> None:
    def visit(leaf: Leaf) -> str | None:
        return "[REDACTED]" if leaf.kind == "key" else None

    out = transform(res({"structuredContent": {"a@x.example": 1, "b@x.example": 2}}), Kind.RESULT, "tools/call",
                    True, visit)
    assert out["result"]["structuredContent"] == {"[REDACTED]": 1, "[REDACTED]~2": 2}


def test_duplicate_keys_in_embedded_json_are_all_scanned() -> None:
    text = '{"email": "' + V + '", "email": "hidden"}'
    out, seen = run(res({"content": [{"type": "text", "text": text}]}))
    assert seen.count("$.result.content[0].text<json>.email") == 2
    assert out["result"]["content"][0]["text"] == '{"email": "X", "email": "hidden"}'


def test_base64_runs_inside_strings_are_scanned_and_reencoded() -> None:
    blob = base64.b64encode(f"Contact: {V}".encode()).decode()
    out, seen = run(res({"content": [{"type": "text", "text": f"attachment {blob} end"}]}))
    assert "$.result.content[0].text<base64>" in seen
    new = out["result"]["content"][0]["text"]
    assert new.startswith("attachment ") and new.endswith(" end")
    assert base64.b64decode(new.split()[1]).decode() == "Contact: X"


def test_adjacent_text_blocks_share_a_group() -> None:
    groups: list[int | None] = []

    def visit(leaf: Leaf) -> str | None:
        groups.append(leaf.block)
        return None

    transform(res({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"},
                               {"type": "image", "data": "x", "mimeType": "image/png"}]}),
              Kind.RESULT, "tools/call", True, visit)
    assert groups == [0, 0]


def test_too_deep_input_is_unscannable() -> None:
    deep: Any = V
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(Unscannable) as err:
        run(res({"structuredContent": {"x": deep}}))
    assert err.value.reason == "pii_too_deep"
    text = json.dumps({"a": "b"})
    for _ in range(6):  # JSON in JSON in ...: deeper levels are analysed as text, not rejected
        text = json.dumps({"payload": text})
    _, seen = run(res({"content": [{"type": "text", "text": text}]}))
    assert seen


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
    out, seen = run(res({"content": [{"type": "text", "text": "{not json " + V + "}"}]}))
    assert seen == ["$.result.content[0].text"]
    assert out["result"]["content"][0]["text"] == "{not json X}"


def structured_result(structured: dict[str, Any], text: str, *extra_blocks: dict[str, Any]) -> dict[str, Any]:
    return res({"content": [{"type": "text", "text": text, "annotations": {"audience": ["user"]}}, *extra_blocks],
                "structuredContent": structured})


def test_the_text_copy_of_structured_content_is_walked_once_and_rewritten_alike() -> None:
    structured = {"rows": [{"email": V, "n": 1.5, "ok": True}], "note": "é"}
    styles: list[dict[str, Any]] = [{}, {"indent": 2}, {"separators": (",", ":")}]
    for text in (json.dumps(structured, **style) for style in styles):
        out, seen = run(structured_result(structured, text))
        assert seen == ["$.result.structuredContent.rows[0].email", "$.result.structuredContent.note"]
        protected = {"rows": [{"email": "X", "n": 1.5, "ok": True}], "note": "é"}
        assert out["result"]["structuredContent"] == protected
        block = out["result"]["content"][0]
        assert json.loads(block["text"]) == protected and block["annotations"] == {"audience": ["user"]}
        assert block["text"] == text.replace(V, "X")  # in the text's own style (indent, separators, escapes)
    payload = structured_result({"a": "nothing here"}, '{"a": "nothing here"}')
    out, seen = run(payload)
    assert out is payload and seen == ["$.result.structuredContent.a"]


@pytest.mark.parametrize(("structured", "text"), [
    ({"note": "x"}, '{"note": "' + V + '", "note": "x"}'),  # a duplicate key hides a value from structuredContent
    ({"card": 4111111111111111.0}, '{"card": 4111111111111111}'),  # equal in Python, not the same JSON
    ({"a": 1, "b": 2}, '{"b": 2, "a": 1, "c": "' + V + '"}'),  # one more key
    ({"flag": 1, "e": "x"}, '{"flag": true, "e": "' + V + '"}'),  # True == 1 in Python
], ids=["duplicate-key", "int-vs-float", "extra-key", "bool-vs-int"])
def test_a_text_copy_that_differs_in_anything_is_walked_as_text(structured: dict[str, Any], text: str) -> None:
    out, seen = run(structured_result(structured, text))
    assert any(path.startswith("$.result.content[0].text<json>") for path in seen), seen
    assert V not in json.dumps(out)


def test_two_text_blocks_beside_structured_content_are_each_walked() -> None:
    structured = {"email": V}
    text = json.dumps(structured)
    out, seen = run(structured_result(structured, text, {"type": "text", "text": text}))
    assert seen.count("$.result.content[0].text<json>.email") == 1
    assert seen.count("$.result.content[1].text<json>.email") == 1
    assert V not in json.dumps(out)


# -- walk + rewrite: the second pass passes over unchanged subtrees --------------------------

_KEYS = ["email", "phone", "rows", "a", "id", "note", "e mail", "x1234", "content", "text", "type", "_meta"]
_SCALARS = st.one_of(
    st.sampled_from([V, "plain", "", "555-0100 call", "4111 1111 1111 1111", "Zm9vQGV4YW1wbGUuY29tIGFuZCBtb3Jl",
                     "{\"k\": 1", "[1, 2]"]),
    st.integers(min_value=-10**12, max_value=10**12), st.booleans(), st.none(), st.floats(allow_nan=False,
                                                                                         allow_infinity=False),
)
_DOCS = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS), children, max_size=4),
        st.dictionaries(st.sampled_from(_KEYS), children, max_size=3).map(json.dumps),
        st.dictionaries(st.sampled_from(_KEYS), children, max_size=3).map(lambda d: json.dumps(d, indent=2)),
        st.dictionaries(st.sampled_from(_KEYS), children, min_size=1, max_size=2).map(
            lambda d: json.dumps(d)[:-1] + ", " + json.dumps(d)[1:]),  # duplicate keys
        st.text(max_size=20).map(lambda t: "see " + base64.b64encode(("mail " + V + t).encode()).decode()),
    ),
    max_leaves=14,
)


@st.composite
def _payloads(draw: st.DrawFn) -> dict[str, Any]:
    blocks = [{"type": "text", "text": draw(_DOCS.map(lambda d: d if isinstance(d, str) else json.dumps(d)))}
              for _ in range(draw(st.integers(0, 3)))]
    result: dict[str, Any] = {"content": blocks}
    if draw(st.booleans()):
        structured = draw(st.dictionaries(st.sampled_from(_KEYS), _DOCS, min_size=1, max_size=3))
        result["structuredContent"] = structured
        if draw(st.booleans()):
            result["content"] = [{"type": "text", "text": json.dumps(structured)}]  # the mirrored copy
    if draw(st.booleans()):
        result["extra"] = draw(_DOCS)
    return res(result)


@settings(max_examples=400, deadline=None)
@given(_payloads(), st.randoms(use_true_random=False))
def test_a_rewrite_that_passes_over_unchanged_subtrees_still_replaces_every_edited_leaf(
        payload: dict[str, Any], random: Any) -> None:
    """An edit :func:`rewrite` missed would leave a value the plan protects in clear text: it
    must give exactly what a full walk substituting the same positions gives."""
    original = copy.deepcopy(payload)
    leaves: list[Leaf] = []
    shape = walk(payload, leaves.append)
    edits = {i: f"<R{i}>" for i in range(len(leaves)) if random.random() < 0.3}
    position = 0

    def substitute(leaf: Leaf) -> str | None:
        nonlocal position
        new = edits.get(position)
        position += 1
        return new

    expected = transform(payload, Kind.RESULT, "tools/call", True, substitute)
    assert position == len(leaves)
    assert rewrite(payload, edits, shape) == expected
    assert payload == original, "the input payload must not be mutated"
    if not edits:
        assert rewrite(payload, edits, shape) is payload

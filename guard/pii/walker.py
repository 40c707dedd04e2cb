"""Where user data lives in an MCP message, and a copy-on-write rewrite of those strings.

:func:`transform` visits every string that can carry user data, in a fixed order, and
rebuilds the payload with the visitor's replacements. Containers along unchanged paths are
shared, changed paths are copied: the input payload is never mutated.

Positions (MCP 2025-11-25 and 2026-07-28 schemas; see ``MCP-NOTES`` "Where user data
lives"), both directions:

* ``tools/call``: ``params.arguments`` (any JSON); result ``content[]`` blocks (``text``,
  ``resource_link`` ``uri``/``name``/``title``/``description``, embedded ``resource``
  ``uri``/``text``), ``structuredContent`` (any JSON).
* ``prompts/get``: ``params.arguments``; result ``description`` and ``messages[].content``.
* ``resources/read``: ``params.uri``; result ``contents[].uri``/``text``.
* ``completion/complete``: ``params.argument.value`` and ``params.context.arguments``;
  result ``completion.values[]``.
* ``sampling/createMessage`` (server request): ``messages[].content``, ``systemPrompt``;
  the client's result ``content``. ``elicitation/create``: ``message``,
  ``requestedSchema``; the client's result ``content``. ``roots/list`` result ``roots[]``.
* ``notifications/message`` ``data``; ``notifications/progress`` ``message``;
  ``notifications/resources/updated`` ``uri``; JSON-RPC ``error.message`` and ``error.data``.
* Modern era: ``inputRequests`` (each walked as the server request it wraps) and
  ``inputResponses`` (each walked as a client result).
* Methods guard does not know: all of ``params``/``result`` as any JSON.

Never visited: object keys, numbers, booleans, ``null``, ids, ``method``, ``_meta``
(anywhere), ``requestState``, content-block ``type``/``mimeType``/``annotations``, and
base64 blobs (image/audio ``data``, resource ``blob``) unless ``scan_blobs`` is on, in which
case blobs that decode to UTF-8 text are visited and re-encoded.

Strings that hold serialized JSON (an object or array) are parsed, walked as any JSON,
and re-serialized in a similar style when something changed. Paths name each leaf like
``$.result.content[0].text<json>.customers[1].email``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from guard.jsonrpc import Kind

Visit = Callable[[str, str], str]
"""``visit(text, path) -> replacement`` (return ``text`` itself for no change)."""

MAX_JSON_DEPTH = 4
"""How many levels of JSON-inside-a-string are parsed."""
MAX_EMBEDDED_JSON = 2 * 1024 * 1024
"""Longest string that is tried as embedded JSON (bytes of text)."""

# Specs: "text", "free", "blob", "block", "content", "input_request",
# ("fields", {key: spec}), ("each", spec), ("values", spec).
Spec = Any
TEXT, FREE, BLOB, BLOCK, CONTENT, INPUT_REQUEST = "text", "free", "blob", "block", "content", "input_request"
_SKIP_KEYS = frozenset({"_meta", "requestState"})
_BLOCK_STRUCTURAL = frozenset({"type", "mimeType", "annotations", "_meta"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def F(**fields: Spec) -> Spec:  # noqa: N802 - reads like a schema
    return ("fields", fields)


def each(spec: Spec) -> Spec:
    return ("each", spec)


def values(spec: Spec) -> Spec:
    return ("values", spec)


_RESOURCE_CONTENTS = F(uri=TEXT, text=TEXT, blob=BLOB)
_BLOCKS: dict[str, Spec] = {
    "text": F(text=TEXT),
    "image": F(data=BLOB),
    "audio": F(data=BLOB),
    "resource_link": F(uri=TEXT, name=TEXT, title=TEXT, description=TEXT),
    "resource": F(resource=_RESOURCE_CONTENTS),
    "tool_use": F(input=FREE),
    "tool_result": F(content=each(BLOCK), structuredContent=FREE),
}
_INPUT_RESPONSE = F(content=CONTENT, roots=each(F(uri=TEXT, name=TEXT)))
_TOOL_RESULT = F(content=each(BLOCK), structuredContent=FREE, inputRequests=values(INPUT_REQUEST))

_NOTHING = None
_C2S_REQUESTS: dict[str, Spec] = {
    "tools/call": F(arguments=FREE, inputResponses=values(_INPUT_RESPONSE)),
    "prompts/get": F(arguments=FREE, inputResponses=values(_INPUT_RESPONSE)),
    "resources/read": F(uri=TEXT, inputResponses=values(_INPUT_RESPONSE)),
    "resources/subscribe": F(uri=TEXT),
    "resources/unsubscribe": F(uri=TEXT),
    "completion/complete": F(argument=F(value=TEXT), context=F(arguments=FREE)),
    "initialize": _NOTHING, "ping": _NOTHING, "server/discover": _NOTHING, "tools/list": _NOTHING,
    "resources/list": _NOTHING, "resources/templates/list": _NOTHING, "prompts/list": _NOTHING,
    "logging/setLevel": _NOTHING, "subscriptions/listen": _NOTHING,
}
_S2C_RESULTS: dict[str, Spec] = {
    "tools/call": _TOOL_RESULT,
    "tasks/result": _TOOL_RESULT,
    "prompts/get": F(description=TEXT, messages=each(F(content=CONTENT)), inputRequests=values(INPUT_REQUEST)),
    "resources/read": F(contents=each(_RESOURCE_CONTENTS), inputRequests=values(INPUT_REQUEST)),
    "completion/complete": F(completion=F(values=each(TEXT))),
    "initialize": _NOTHING, "ping": _NOTHING, "server/discover": _NOTHING, "tools/list": _NOTHING,
    "resources/list": _NOTHING, "resources/templates/list": _NOTHING, "prompts/list": _NOTHING,
    "logging/setLevel": _NOTHING, "resources/subscribe": _NOTHING, "resources/unsubscribe": _NOTHING,
    "subscriptions/listen": _NOTHING,
}
_S2C_REQUESTS: dict[str, Spec] = {
    "sampling/createMessage": F(messages=each(F(content=CONTENT)), systemPrompt=TEXT),
    "elicitation/create": F(message=TEXT, requestedSchema=FREE),
    "roots/list": _NOTHING, "ping": _NOTHING,
}
_C2S_RESULTS: dict[str, Spec] = {
    "sampling/createMessage": F(content=CONTENT),
    "elicitation/create": F(content=FREE),
    "roots/list": F(roots=each(F(uri=TEXT, name=TEXT))),
    "ping": _NOTHING,
}
_NOTIFICATIONS: dict[str, Spec] = {
    "notifications/message": F(data=FREE),
    "notifications/progress": F(message=TEXT),
    "notifications/resources/updated": F(uri=TEXT),
    "notifications/initialized": _NOTHING, "notifications/cancelled": _NOTHING,
    "notifications/roots/list_changed": _NOTHING, "notifications/tools/list_changed": _NOTHING,
    "notifications/prompts/list_changed": _NOTHING, "notifications/resources/list_changed": _NOTHING,
}
_ERROR = F(message=TEXT, data=FREE)


def message_spec(kind: Kind, method: str | None, to_client: bool) -> tuple[str, Spec] | None:
    """``(top-level key, spec)`` for a message, or ``None`` when it carries no user data."""
    if kind is Kind.ERROR:
        return "error", _ERROR
    if kind is Kind.NOTIFICATION:
        spec = _NOTIFICATIONS.get(method or "", FREE)
        return None if spec is None else ("params", spec)
    if kind is Kind.REQUEST:
        table = _S2C_REQUESTS if to_client else _C2S_REQUESTS
        if method is not None and method.startswith("tasks/") and not to_client:
            return None
        spec = table.get(method or "", FREE)
        return None if spec is None else ("params", spec)
    table = _S2C_RESULTS if to_client else _C2S_RESULTS
    spec = table.get(method or "", FREE)
    if spec is None:
        return None
    return "result", spec


def _key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENT.match(key) else f"{path}[{json.dumps(key)}]"


def _dumps_like(doc: Any, original: str) -> str:
    body = original.strip()
    lead = original[: len(original) - len(original.lstrip())]
    trail = original[len(original.rstrip()):]
    indent: str | None = None
    seps = (",", ":")
    if "\n" in body:
        m = re.search(r"\n([ \t]+)\S", body)
        indent = m.group(1) if m else ""
        seps = (",", ": ")
    elif re.search(r'":\s', body) or re.search(r",\s", body):
        seps = (", ", ": ")
    ensure_ascii = body.isascii() and "\\u" in body
    return lead + json.dumps(doc, indent=indent, separators=seps, ensure_ascii=ensure_ascii) + trail


class _Run:
    def __init__(self, visit: Visit, scan_blobs: bool) -> None:
        self.visit = visit
        self.scan_blobs = scan_blobs

    def walk(self, value: Any, spec: Spec, path: str, depth: int) -> Any:
        if spec == TEXT:
            return self.text(value, path, depth) if isinstance(value, str) else value
        if spec == FREE:
            return self.free(value, path, depth)
        if spec == BLOB:
            return self.blob(value, path, depth) if isinstance(value, str) and self.scan_blobs else value
        if spec == BLOCK:
            return self.block(value, path, depth)
        if spec == CONTENT:
            if isinstance(value, list):
                return self.walk(value, each(BLOCK), path, depth)
            if isinstance(value, dict) and value.get("type") in _BLOCKS:
                return self.block(value, path, depth)
            return self.free(value, path, depth)
        if spec == INPUT_REQUEST:
            if not isinstance(value, dict):
                return value
            method = value.get("method")
            inner = _S2C_REQUESTS.get(method, FREE) if isinstance(method, str) else FREE
            return value if inner is None else self.walk(value, F(params=inner), path, depth)
        tag, arg = spec
        if tag == "fields":
            if not isinstance(value, dict):
                return value
            return self._rebuild_dict(value, path, depth, lambda k: arg.get(k))
        if tag == "each":
            if not isinstance(value, list):
                return value
            return self._rebuild_list(value, path, depth, arg)
        if tag == "values":
            if not isinstance(value, dict):
                return value
            return self._rebuild_dict(value, path, depth, lambda k: None if k in _SKIP_KEYS else arg)
        raise AssertionError(f"unknown spec {spec!r}")  # pragma: no cover - specs are module constants

    def _rebuild_dict(self, value: dict[str, Any], path: str, depth: int,
                      spec_for: Callable[[str], Spec]) -> dict[str, Any]:
        out: dict[str, Any] | None = None
        for key, child in value.items():
            spec = spec_for(key)
            if spec is None:
                continue
            new = self.walk(child, spec, _key_path(path, key), depth)
            if new is not child:
                if out is None:
                    out = dict(value)
                out[key] = new
        return value if out is None else out

    def _rebuild_list(self, value: list[Any], path: str, depth: int, spec: Spec) -> list[Any]:
        out: list[Any] | None = None
        for i, child in enumerate(value):
            new = self.walk(child, spec, f"{path}[{i}]", depth)
            if new is not child:
                if out is None:
                    out = list(value)
                out[i] = new
        return value if out is None else out

    def free(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value, path, depth)
        if isinstance(value, list):
            return self._rebuild_list(value, path, depth, FREE)
        if isinstance(value, dict):
            return self._rebuild_dict(value, path, depth, lambda k: None if k in _SKIP_KEYS else FREE)
        return value

    def block(self, value: Any, path: str, depth: int) -> Any:
        if not isinstance(value, dict):
            return value
        spec = _BLOCKS.get(value.get("type"))  # type: ignore[arg-type]
        if spec is not None:
            return self.walk(value, spec, path, depth)
        return self._rebuild_dict(value, path, depth, lambda k: None if k in _BLOCK_STRUCTURAL else FREE)

    def text(self, value: str, path: str, depth: int) -> str:
        if depth < MAX_JSON_DEPTH and len(value) <= MAX_EMBEDDED_JSON:
            body = value.strip()
            if body[:1] in ("{", "[") and body[-1:] in ("}", "]"):
                try:
                    doc = json.loads(body)
                except (ValueError, RecursionError):
                    doc = None
                if isinstance(doc, dict | list):
                    new = self.free(doc, path + "<json>", depth + 1)
                    return value if new is doc else _dumps_like(new, value)
        return self.visit(value, path)

    def blob(self, value: str, path: str, depth: int) -> str:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return value
        new = self.text(decoded, path + "<base64>", depth)
        return value if new is decoded else base64.b64encode(new.encode("utf-8")).decode("ascii")


def transform(payload: Mapping[str, Any], kind: Kind, method: str | None, to_client: bool, visit: Visit,
              scan_blobs: bool = False) -> dict[str, Any]:
    """Apply ``visit`` to every user-data string of a JSON-RPC payload (copy on write).

    Returns ``payload`` itself when nothing changed. Visiting order is deterministic, so
    a first pass can collect strings and a second pass substitute results by position.
    """
    plan = message_spec(kind, method, to_client)
    src = dict(payload) if not isinstance(payload, dict) else payload
    if plan is None:
        return src
    key, spec = plan
    if key not in src:
        return src
    run = _Run(visit, scan_blobs)
    new = run.walk(src[key], spec, f"$.{key}", 0)
    if new is src[key]:
        return src
    out = dict(src)
    out[key] = new
    return out


def has_user_data(kind: Kind, method: str | None, to_client: bool) -> bool:
    """Cheap check (no walk): can this kind of message carry user data at all?"""
    return message_spec(kind, method, to_client) is not None

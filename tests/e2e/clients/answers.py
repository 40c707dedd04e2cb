"""Deterministic answers to server->client requests, shared by the Python e2e clients.

Pure stdlib, dict in / dict out (wire JSON, camelCase), so both the mcp 2.x helper
(``direct.py``, main venv) and the mcp 1.x script (``mcp1_client.py``, ``.venv-mcp1``) use the
same logic; ``tests/e2e/node/client.mjs`` re-implements it line for line. Given the same request
and the same ``answers`` configuration, every client returns the same reply, so results through
guard can be compared to results direct.

``answers`` (the script's ``"answers"`` object, all keys optional)::

    {"sampling": {"text": "fixed reply", "model": "e2e-deterministic"},
     "elicitation": {"action": "accept", "content": {"email": "x@example.com"}},
     "roots": [{"uri": "file:///workspace/e2e", "name": "e2e"}]}

Defaults: sampling replies ``"deterministic reply to: <last user text>"`` (it echoes the prompt on
purpose, so PII in a sampling request comes back in the client's response); elicitation accepts
with a value synthesised from the requested schema; roots is the single root above.
"""

from __future__ import annotations

from typing import Any

DEFAULT_MODEL = "e2e-deterministic"
DEFAULT_ROOTS: list[dict[str, Any]] = [{"uri": "file:///workspace/e2e", "name": "e2e"}]


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(_text_of(c) for c in content)
    if isinstance(content, dict) and content.get("type") == "text":
        return str(content.get("text", ""))
    return ""


def last_user_text(params: dict[str, Any]) -> str:
    """Text of the last ``user`` message of a ``sampling/createMessage`` request."""
    for message in reversed(params.get("messages") or []):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def sampling_reply(params: dict[str, Any], answers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``CreateMessageResult`` for ``params`` (wire JSON)."""
    cfg = (answers or {}).get("sampling") or {}
    text = cfg.get("text")
    if text is None:
        text = f"deterministic reply to: {last_user_text(params)}"
    return {
        "role": "assistant",
        "content": {"type": "text", "text": text},
        "model": cfg.get("model", DEFAULT_MODEL),
        "stopReason": "endTurn",
    }


def _value_for(name: str, schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("oneOf"):
        return schema["oneOf"][0].get("const")
    kind = schema.get("type")
    if kind == "boolean":
        return True
    if kind in ("number", "integer"):
        return schema.get("minimum", 1)
    if kind == "array":
        items = schema.get("items") or {}
        first = _value_for(name, items) if items else "e2e"
        return [first]
    fmt = schema.get("format")
    if fmt == "email" or "email" in name.lower():
        return "e2e.user@example.com"
    if fmt == "uri":
        return "https://example.com/e2e"
    if fmt == "date":
        return "2026-01-01"
    if fmt == "date-time":
        return "2026-01-01T00:00:00Z"
    return "e2e"


def elicitation_content(requested_schema: dict[str, Any]) -> dict[str, Any]:
    """A value for every property of an elicitation form schema, chosen deterministically."""
    props = requested_schema.get("properties") or {}
    return {name: _value_for(name, prop or {}) for name, prop in props.items()}


def elicitation_reply(params: dict[str, Any], answers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ``ElicitResult`` for ``params`` (wire JSON)."""
    cfg = (answers or {}).get("elicitation") or {}
    action = cfg.get("action", "accept")
    if action != "accept":
        return {"action": action}
    if params.get("mode") == "url":
        return {"action": "accept"}
    content = elicitation_content(params.get("requestedSchema") or {})
    content.update(cfg.get("content") or {})
    return {"action": "accept", "content": content}


def roots_reply(answers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``ListRootsResult`` (wire JSON)."""
    roots = (answers or {}).get("roots")
    return {"roots": list(DEFAULT_ROOTS if roots is None else roots)}

"""What a span may say about a message, and nothing more. No I/O, no OpenTelemetry.

Span attributes are chosen from guard's own bookkeeping, never from message content:

* ``guard.server``: the upstream's configured name;
* ``mcp.method.name``: the MCP method when it is one MCP defines (:func:`guard.mcp.is_known_method`),
  else ``other`` (a method string is whatever the client sent);
* ``guard.target.type`` / ``guard.target.name`` and ``gen_ai.tool.name``: the tool or prompt
  name *as the audit record holds it* (the PII stage's protected form when that stage ran).
  Resource URIs and completion refs, which can hold personal data, appear only in that
  protected form and are left out when no PII stage ran;
* ``guard.decision`` (``allow``/``deny``) and ``guard.decision.reason``: the authorize stage's
  stable reason code;
* ``guard.pii.findings`` and ``guard.pii.entity_types``: how many values of which types the PII
  stage protected (never the values, nor where they were);
* ``guard.outcome``, ``guard.rejected_by``, ``rpc.jsonrpc.error_code``, ``error.type``: how the
  message ended (see :func:`outcome_of`).

Never recorded: arguments, results, ``_meta`` other than the trace context, request ids,
session ids, principals, tokens, client addresses, resource URIs in clear, error messages.
"""

from __future__ import annotations

from typing import Any

from guard import mcp
from guard.context import MessageContext, Verdict

MAX_NAME = 256
"""Longest tool/prompt name recorded (longer ones are cut, as audit does)."""

_TARGET_TYPES = {
    mcp.TOOLS_CALL: "tool",
    mcp.PROMPTS_GET: "prompt",
    mcp.RESOURCES_READ: "resource",
    mcp.RESOURCES_SUBSCRIBE: "resource",
    mcp.RESOURCES_UNSUBSCRIBE: "resource",
    mcp.COMPLETION_COMPLETE: "completion",
}
_NAMED = frozenset({mcp.TOOLS_CALL, mcp.PROMPTS_GET})
"""Methods whose target is a name from the server's catalogue, recorded as audit records it."""

OK_OUTCOMES = frozenset({"ok", "forwarded"})
"""Outcomes of a message that went as it should."""
NEUTRAL_OUTCOMES = frozenset({"cancelled", "is_error"})
"""Outcomes that are not failures of guard or the upstream (the client cancelled; a tool
reported its own error in its result). Every other outcome sets the span status to ERROR;
these and :data:`OK_OUTCOMES` leave it unset, as OpenTelemetry's conventions ask."""


def method_name(method: str | None) -> str:
    """The method as recorded: an MCP-defined name verbatim, anything else ``other``."""
    if method and mcp.is_known_method(method):
        return method
    return "other"


def _bounded(value: str, limit: int = MAX_NAME) -> str:
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def target_attributes(ctx: MessageContext) -> dict[str, Any]:
    """The target the audit record names, per the rules in the module docstring ({} when none)."""
    method = ctx.method
    kind = _TARGET_TYPES.get(method or "")
    if kind is None or ctx.target is None:
        return {}
    name = ctx.audit_target
    if name is None and method in _NAMED:
        name = ctx.target  # no PII stage: audit records the name as is
    if name is None:
        return {"guard.target.type": kind}
    attributes: dict[str, Any] = {"guard.target.type": kind, "guard.target.name": _bounded(name)}
    if kind == "tool":
        attributes["gen_ai.tool.name"] = attributes["guard.target.name"]
    return attributes


def decision_attributes(ctx: MessageContext) -> dict[str, Any]:
    decision = ctx.decision
    if decision is None:
        return {}
    return {"guard.decision": "allow" if decision.allowed else "deny",
            "guard.decision.reason": _bounded(decision.reason, 128)}


def findings_of(ctx: MessageContext) -> tuple[int, frozenset[str]]:
    """How many PII values the stage protected in this message, and their entity types."""
    return len(ctx.findings), frozenset(_bounded(f.entity_type, 64) for f in ctx.findings)


def verdict_name(verdict: Verdict) -> str:
    """A stage's verdict on a span: ``continue``, ``rewrite`` (continued with a changed message) or ``reject``."""
    if verdict.rejected:
        return "reject"
    return "rewrite" if verdict.message is not None else "continue"


def outcome_of(verdict: Verdict | None, upstream_outcome: str | None) -> str:
    """How a request ended, for ``guard.outcome``.

    ``rejected`` (a stage refused it), else the upstream's outcome as the relay classified it
    (``ok``, ``is_error``, ``error:<code>``), or the reason guard answered it itself
    (``upstream_timeout``, ``upstream_closed``, ``shutting_down``, ``internal_error``, ...).
    """
    if verdict is not None and verdict.rejected:
        return "rejected"
    return upstream_outcome or "ok"


def rejection_attributes(verdict: Verdict) -> dict[str, Any]:
    """The stage that refused a message and the JSON-RPC error code the client got."""
    attributes: dict[str, Any] = {"rpc.jsonrpc.error_code": int(verdict.code)}
    if verdict.stage:
        attributes["guard.rejected_by"] = _bounded(verdict.stage, 64)
    data = verdict.data
    reason = data.get("reason") if isinstance(data, dict) else None
    if isinstance(reason, str):
        attributes["error.type"] = _bounded(reason, 64)
    return attributes


def bounded_outcome(outcome: str) -> str:
    """An outcome code as recorded (guard's own codes; bounded in case one ever carries more)."""
    return _bounded(outcome, 64)

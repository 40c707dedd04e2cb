"""The audit record schema (version 1): ECS-named JSON objects built from typed fields. No I/O.

Field names follow the Elastic Common Schema (ECS 8.11) so records ship to Elastic or
Splunk without a custom parser; everything guard-specific lives under ``guard.*``.
``docs/readme/audit.md`` has the field table.

Security: records are built **only** from typed fields of
:class:`~guard.context.MessageContext` and :class:`~guard.context.Event` (method,
target, decision, PII finding *metadata*, outcome codes, sizes). Params, arguments,
results, error messages from upstreams, tokens and keys are never read, so they can
never be copied into the log. Free-form strings that do come from guard's own stages
(reasons, rule names) are length-capped and made valid UTF-8.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from guard.audit.canonical import rfc3339
from guard.context import Direction, Event, EventKind, MessageContext, Principal, SessionInfo
from guard.jsonrpc import Kind, serialize

SCHEMA_VERSION = 1
ECS_VERSION = "8.11.0"
DATASET = "guard.audit"

MAX_TEXT = 512
MAX_TARGET = 1024
MAX_LIST = 64
MAX_FINDING_GROUPS = 50

# event.action values of records guard's audit writer adds itself.
ACTION_FILE_OPENED = "audit-file-opened"
ACTION_CHECKPOINT = "audit-checkpoint"
ACTION_STOPPED = "audit-stopped"
ACTION_RECORDS_LOST = "audit-records-lost"
INTERNAL_ACTIONS = frozenset({ACTION_FILE_OPENED, ACTION_CHECKPOINT, ACTION_STOPPED, ACTION_RECORDS_LOST})

_TARGET_TYPES = {
    "tools/call": "tool",
    "prompts/get": "prompt",
    "resources/read": "resource",
    "resources/subscribe": "resource",
    "resources/unsubscribe": "resource",
    "completion/complete": "completion",
}
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.%a-zA-Z]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")
_DIGEST = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")

_KIND_NAMES = {kind: kind.value for kind in Kind}
_DIRECTION_NAMES = {direction: direction.value for direction in Direction}
"""Enum values by member: ``.value`` is a Python-level property, read twice per record otherwise."""

Clock = Callable[[], float]
IdFactory = Callable[[], str]


_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_event_id() -> str:
    """A unique event id (128 bits, hex): a random per-process prefix and a counter.

    Unique across processes and restarts (64 random bits each) without a ``getrandom``
    system call per record, which cost ~6 % of guard's CPU per call under load.
    """
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """A string safe to log: valid UTF-8 (lone surrogates escaped) and at most ``limit`` characters."""
    s = value if isinstance(value, str) else str(value)
    if len(s) <= limit and s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def base(action: str, category: str, types: list[str], outcome: str, now: float, event_id: str,
         ) -> dict[str, Any]:
    """The fields every record has."""
    return {
        "@timestamp": rfc3339(now),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "id": event_id,
            "kind": "event",
            "category": [category],
            "type": types,
            "action": action,
            "outcome": outcome,
            "dataset": DATASET,
            "module": "guard",
        },
        "service": {"name": "guard", "type": "mcp-proxy"},
        "guard": {"schema_version": SCHEMA_VERSION},
    }


def _client(addr: str | None) -> dict[str, Any] | None:
    if not addr:
        return None
    return dict(_parse_client(addr))


@functools.lru_cache(maxsize=4096)
def _parse_client(addr: str) -> dict[str, Any]:
    """ECS ``client.*`` for an address string (cached: a connection's address repeats per message)."""
    out: dict[str, Any] = {"address": text(addr, 128)}
    match = _HOST_PORT.match(addr)
    host = addr
    if match:
        host = match.group("v6") or match.group("host") or ""
        port = int(match.group("port"))
        if port <= 65535:
            out["port"] = port
    try:
        out["ip"] = str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        pass
    return out


def _principal_fields(record: dict[str, Any], principal: Principal) -> None:
    for key, value in _principal_parts(principal):
        if key == "guard":
            record["guard"]["principal"] = dict(value)
        else:
            record[key] = dict(value)


@functools.lru_cache(maxsize=4096)
def _principal_parts(principal: Principal) -> tuple[tuple[str, dict[str, Any]], ...]:
    """ECS ``user.*``/``organization.*``/``tls.*`` and ``guard.principal`` (cached per principal)."""
    record: dict[str, Any] = {"guard": {}}
    record["user"] = {
        "id": text(principal.subject),
        "name": text(principal.subject),
        "roles": [text(r, 128) for r in principal.roles[:MAX_LIST]],
    }
    if principal.tenant:
        record["organization"] = {"id": text(principal.tenant)}
    if principal.client_cert_subject:
        record["tls"] = {"client": {"subject": text(principal.client_cert_subject)}}
    guard_principal: dict[str, Any] = {"anonymous": principal.anonymous}
    if principal.issuer:
        guard_principal["issuer"] = text(principal.issuer)
    if principal.tenant:
        guard_principal["tenant"] = text(principal.tenant)
    if principal.key_id:
        guard_principal["key_id"] = text(principal.key_id, 128)
    if principal.expires_at is not None:
        guard_principal["expires"] = rfc3339(principal.expires_at)
    record["guard"] = guard_principal
    return tuple(record.items())


def _session_fields(record: dict[str, Any], session: SessionInfo | None, server: str | None,
                    client_addr: str | None) -> None:
    upstream = server if server is not None else (session.server if session is not None else None)
    if upstream:
        record["service"]["target"] = {"name": text(upstream, 128)}
    client = _client(client_addr if client_addr is not None else (session.client_addr if session else None))
    if client is not None:
        record["client"] = client
    if session is not None:
        record["guard"]["session"] = {"id": text(session.id, 128)}
        _principal_fields(record, session.principal)


def _pii(ctx: MessageContext) -> dict[str, Any] | None:
    if not ctx.findings:
        return None
    groups: Counter[tuple[str, str, str]] = Counter(
        (text(f.entity_type, 128), text(f.path, MAX_TEXT), text(f.action, 64)) for f in ctx.findings
    )
    ordered = sorted(groups.items())
    findings = [
        {"entity_type": e, "path": p, "action": a, "count": n}
        for (e, p, a), n in ordered[:MAX_FINDING_GROUPS]
    ]
    out: dict[str, Any] = {
        "count": len(ctx.findings),
        "entity_types": sorted({e for e, _, _ in groups}),
        "actions": sorted({a for _, _, a in groups}),
        "findings": findings,
    }
    if len(ordered) > MAX_FINDING_GROUPS:
        out["groups_omitted"] = len(ordered) - MAX_FINDING_GROUPS
    return out


def _outcome_and_types(ctx: MessageContext) -> tuple[str, list[str]]:
    kind = ctx.message.kind
    if ctx.verdict.rejected:
        return "failure", ["access", "denied"] if kind is Kind.REQUEST else ["denied"]
    if kind is Kind.RESULT or kind is Kind.ERROR:
        upstream = ctx.upstream_outcome
        if upstream is None:
            outcome = "success" if kind is Kind.RESULT else "failure"
        else:
            outcome = "success" if upstream == "ok" else "failure"
        return outcome, ["access", "end"]
    if kind is Kind.REQUEST:
        return "success", ["access", "allowed"]
    return "success", ["info", "allowed"]


def _denial(ctx: MessageContext) -> dict[str, Any]:
    """``guard.decision`` of a refused message: ``allowed: false``, the refusing stage and reason.

    The reason is the policy's (``default_deny``/``explicit_deny``/``policy_error``) when
    authorize refused, else the refusing stage's ``data.reason`` (``pii_blocked``,
    ``rate_limited``, ``duplicate_id``, ...); ``docs/compliance.md`` tables them all.
    """
    verdict = ctx.verdict
    decision = ctx.decision
    reason: Any = None
    if decision is not None and not decision.allowed and verdict.stage == "authorize":
        reason = decision.reason
    if not isinstance(reason, str) and isinstance(verdict.data, Mapping):
        reason = verdict.data.get("reason")
    if not isinstance(reason, str) or not reason:
        reason = "denied"
    return {"allowed": False, "reason": text(reason, 128), "stage": text(verdict.stage or "unknown", 64)}


def _forwarded_size(ctx: MessageContext) -> int:
    try:
        return len(serialize(ctx.message).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError):
        return 0


def message_record(ctx: MessageContext, *, now: float, perf: float, event_id: str) -> dict[str, Any]:
    """One record for one message outcome (c2s or s2c, any kind, allowed or rejected).

    ``now`` is wall-clock epoch seconds for ``@timestamp``; ``perf`` is the current
    ``time.perf_counter()`` used for the response latency (``event.duration``, ns).
    """
    message = ctx.message
    kind = message.kind
    is_response = kind is Kind.RESULT or kind is Kind.ERROR
    kind_name = _KIND_NAMES[kind]
    outcome, types = _outcome_and_types(ctx)
    method = ctx.method or message.method or ""
    record = base(text(method, 128) or kind_name, "api", types, outcome, now, event_id)
    guard = record["guard"]
    guard["direction"] = _DIRECTION_NAMES[ctx.direction]
    rpc: dict[str, Any] = {"kind": kind_name}
    if message.id is not None:
        rpc["id"] = text(message.id, 128)
    if method:
        rpc["method"] = text(method, 128)
    guard["rpc"] = rpc
    _session_fields(record, ctx.session, None, None)
    record["network"] = {
        "direction": "ingress" if ctx.direction is Direction.CLIENT_TO_SERVER else "egress",
        "protocol": "mcp",
    }
    if ctx.target is not None:
        # The PII stage's protected form when it ran: a resource URI can hold personal data.
        name = ctx.audit_target if ctx.audit_target is not None else ctx.target
        guard["target"] = {"type": _TARGET_TYPES.get(method, "other"), "name": text(name, MAX_TARGET)}
    decision = ctx.decision
    verdict = ctx.verdict
    if verdict.rejected:
        # Truthful decisions (issue 15): whatever stage refused the message, the record says deny.
        guard["decision"] = _denial(ctx)
        record["event"]["reason"] = guard["decision"]["reason"]
    elif decision is not None:
        guard["decision"] = {"allowed": decision.allowed, "reason": text(decision.reason, 128)}
        record["event"]["reason"] = text(decision.reason)
    if decision is not None and decision.rule and (not verdict.rejected or verdict.stage == "authorize"):
        guard["decision"]["rule"] = text(decision.rule)
        record["rule"] = {"name": text(decision.rule)}
    if verdict.rejected:
        reason = verdict.data.get("reason") if isinstance(verdict.data, Mapping) else None
        guard["verdict"] = {"action": "reject", "code": int(verdict.code), "stage": text(verdict.stage or "")}
        if isinstance(reason, str):
            guard["verdict"]["reason"] = text(reason, 128)
            record["event"].setdefault("reason", text(reason))
        if isinstance(verdict.data, Mapping) and verdict.data.get("upstream_executed") is True:
            guard["verdict"]["upstream_executed"] = True  # refused after the call ran upstream
        record["error"] = {"code": str(int(verdict.code)), "message": text(verdict.error_message)}
        if verdict.close is not None:
            guard["verdict"]["close_code"] = int(verdict.close.code)
    else:
        guard["verdict"] = {"action": "continue"}
    pii = _pii(ctx)
    if pii is not None:
        guard["pii"] = pii
    if ctx.upstream_outcome is not None:
        guard["upstream"] = {"outcome": text(ctx.upstream_outcome, 64)}
    if ctx.request is not None and ctx.request.audit_id is not None and is_response:
        guard["request"] = {"event_id": ctx.request.audit_id}  # the write-ahead record this answers
    if is_response and ctx.request is not None:
        record["event"]["duration"] = max(0, round((perf - ctx.request.started) * 1e9))
    sizes: dict[str, Any] = {"bytes_received": int(message.raw_size)}
    if not verdict.rejected:
        sizes["bytes_forwarded"] = _forwarded_size(ctx)
    guard["message"] = sizes
    if ctx.timings:
        guard["timings_us"] = {text(k, 64): int(v * 1e6) for k, v in ctx.timings.items()}
    if ctx.fail_open:
        guard["fail_open"] = [text(s, 64) for s in ctx.fail_open[:MAX_LIST]]
    return record


_EVENT_SHAPE: dict[EventKind, tuple[str, list[str]]] = {
    EventKind.CONNECT: ("session", ["start"]),
    EventKind.AUTH_FAILURE: ("authentication", ["start"]),
    EventKind.CLOSE: ("session", ["end"]),
    EventKind.POLICY_RELOAD: ("configuration", ["change"]),
    EventKind.KEYS_LOADED: ("configuration", ["info"]),
    EventKind.PROTOCOL_ERROR: ("api", ["access", "denied"]),
}


def event_record(event: Event, *, event_id: str) -> dict[str, Any]:
    """One record for a connection-level event (connect, auth failure, close, reload, keys).

    Only documented ``details`` keys are read, each type-checked:
    ``policy_reload``: ``ok`` (bool), ``digests``/``previous_digests`` (file -> ``[sha256:]``hex),
    ``rules`` (int), ``error`` (str or None);
    ``keys_loaded``: ``purpose`` (str), ``key_ids`` (list of str), ``primary`` (str).
    """
    category, types = _EVENT_SHAPE[event.kind]
    details = event.details if isinstance(event.details, Mapping) else {}
    failed = event.kind in (EventKind.AUTH_FAILURE, EventKind.PROTOCOL_ERROR) or (
        event.kind is EventKind.POLICY_RELOAD
        and (details.get("ok") is False or isinstance(details.get("error"), str))
    )
    record = base(event.kind.value, category, types, "failure" if failed else "success", event.at, event_id)
    _session_fields(record, event.session, event.server, event.client_addr)
    guard = record["guard"]
    if event.reason:
        record["event"]["reason"] = text(event.reason)
    if event.kind in (EventKind.AUTH_FAILURE, EventKind.PROTOCOL_ERROR):
        stage = "authenticate" if event.kind is EventKind.AUTH_FAILURE else "protocol"
        guard["decision"] = {"allowed": False, "reason": text(event.reason or "unknown", 128), "stage": stage}
    if event.kind is EventKind.AUTH_FAILURE:
        guard["auth"] = {"reason": text(event.reason or "unknown", 128)}
        if event.code is not None:
            guard["auth"]["status"] = int(event.code)
            record["http"] = {"response": {"status_code": int(event.code)}}
    elif event.kind is EventKind.PROTOCOL_ERROR:
        guard["protocol_error"] = {"reason": text(event.reason or "unknown", 64)}
        if event.code is not None:
            guard["protocol_error"]["code"] = int(event.code)
    elif event.kind is EventKind.CLOSE:
        close: dict[str, Any] = {}
        if event.code is not None:
            close["code"] = int(event.code)
        if event.reason:
            close["reason"] = text(event.reason, 128)
        guard["close"] = close
    elif event.kind is EventKind.POLICY_RELOAD:
        policy: dict[str, Any] = {"ok": not failed}
        for key in ("digests", "previous_digests"):
            digests = details.get(key)
            if isinstance(digests, Mapping):
                policy[key] = {
                    text(k): v for k, v in list(digests.items())[:MAX_LIST]
                    if isinstance(v, str) and _DIGEST.match(v)
                }
        rules = details.get("rules")
        if isinstance(rules, int) and not isinstance(rules, bool):
            policy["rules"] = rules
        error = details.get("error") or (event.reason if failed else None)
        if isinstance(error, str):
            policy["error"] = text(error)
        guard["policy"] = policy
    elif event.kind is EventKind.KEYS_LOADED:
        keys: dict[str, Any] = {}
        purpose = details.get("purpose")
        if isinstance(purpose, str):
            keys["purpose"] = text(purpose, 64)
        key_ids = details.get("key_ids")
        if isinstance(key_ids, list | tuple):
            keys["key_ids"] = [text(k, 128) for k in key_ids[:MAX_LIST] if isinstance(k, str)]
        primary = details.get("primary")
        if isinstance(primary, str):
            keys["primary"] = text(primary, 128)
        guard["keys"] = keys
    return record


def internal_record(action: str, fields: dict[str, Any], *, now: float, event_id: str) -> dict[str, Any]:
    """A record the audit writer adds itself (file header, checkpoint, stop, loss count)."""
    outcome = "failure" if action == ACTION_RECORDS_LOST else "success"
    record = base(action, "configuration", ["info"], outcome, now, event_id)
    record["guard"].update(fields)
    return record


def wall_clock() -> float:
    return time.time()

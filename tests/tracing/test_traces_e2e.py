"""Traces through a real guard: the demo stack, the official SDK client, a real OTLP/HTTP receiver.

guard runs as ``guard demo`` configures it (JWT, the shipped Casbin policy, the shipped PII rules,
audit) plus ``[tracing]`` pointed at :mod:`tests.tracing.receiver`, which decodes the protobuf the
OpenTelemetry exporter sends. The analyst ``alice`` makes an allowed call whose result carries
personal data (protected by guard), a second allowed call, and a denied call. Proves:

* each client message is one ``SERVER`` span with a child span per stage and an ``upstream``
  span, carrying server, method, tool, decision and outcome (docs/operators.md, "Tracing");
* the denied call's trace shows the authorize stage's rejection and no upstream span;
* the PII-protected result shows on the spans as counts and entity types only;
* a ``traceparent`` in ``params._meta`` is continued, and the upstream receives guard's own span
  as its ``_meta.traceparent``;
* none of the demo's personal data, the arguments, the protected tokens or the bearer tokens
  appear anywhere in the exported bytes.
"""

from __future__ import annotations

import contextlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError

from guard.client import websocket_client
from guard.config import parse
from guard.demo.cli import demo_config, prepare
from guard.demo.data import CUSTOMERS
from guard.demo.server import read_record
from guard.runtime import build_runtime
from tests.support.guard_server import running_runtime
from tests.tracing.receiver import OtlpReceiver, ReceivedSpan, otlp_receiver

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
REQUEST_STAGES = ["authenticate", "authorize", "pii", "audit"]
EMAIL = "carmen.diaz@example.net"
TOKEN = re.compile(r"<pii:[^>]+>")


def stack(tmp_path: Path, endpoint: str, record: Path) -> tuple[Any, dict[str, str]]:
    dev = tmp_path / "dev"
    _, tokens = prepare(dev, 0)
    raw = tomllib.loads(demo_config(dev, ROOT / "policies", 0))
    raw["upstreams"]["demo"]["env"] = {"GUARD_DEMO_RECORD": str(record)}
    raw["tracing"] = {"endpoint": endpoint, "service_name": "guard-test", "schedule_delay": 0.2}
    return build_runtime(parse(raw)), tokens


def tool_root(receiver: OtlpReceiver, tool: str) -> ReceivedSpan:
    found = [s for s in receiver.roots() if s.attributes.get("gen_ai.tool.name") == tool]
    assert len(found) == 1, [(s.name, s.attributes) for s in receiver.roots()]
    return found[0]


def personal_values() -> set[str]:
    """Every value of the demo's customer records long enough to never occur by chance."""
    values = {str(v) for customer in CUSTOMERS for v in customer.values() if len(str(v)) >= 6}
    values |= {part for customer in CUSTOMERS for part in str(customer["name"]).split() if len(part) >= 5}
    return values


async def test_traces_of_allowed_denied_and_pii_protected_calls_hold_no_personal_data(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    async with otlp_receiver() as (endpoint, receiver):
        runtime, tokens = stack(tmp_path, endpoint, record)
        async with running_runtime(runtime) as base:
            transport = websocket_client(f"{base}/mcp/demo", headers={"Authorization": f"Bearer {tokens['alice']}"})
            async with Client(transport, mode="legacy") as alice:
                found = await alice.call_tool("find_customer", {"query": "Johnson"}, meta={
                    "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
                protected = json.dumps(found.structured_content)
                assert "alice.johnson@example.com" not in protected and "<pii:" in protected
                got = await alice.call_tool("get_customer", {"customer_id": "C002"})
                assert not got.is_error
                result_tokens = set(TOKEN.findall(protected + json.dumps(got.structured_content)))
                assert result_tokens
                with contextlib.suppress(MCPError):  # no such customer; the URI itself holds an e-mail address
                    await alice.read_resource(f"customers://{EMAIL}")
                with pytest.raises(MCPError) as denied:
                    await alice.call_tool("delete_customer", {"customer_id": "C003"})
                assert denied.value.error.code == -31001
        # guard has shut down: its last spans were flushed to the receiver on the way out.

    assert {s.resource.get("service.name") for s in receiver.spans} == {"guard-test"}

    # The allowed call with personal data in its result, continuing the client's trace.
    allowed = tool_root(receiver, "find_customer")
    assert allowed.name == "tools/call" and allowed.kind == "server"
    assert (allowed.trace_id, allowed.parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    attrs = allowed.attributes
    assert attrs["guard.server"] == "demo" and attrs["mcp.method.name"] == "tools/call"
    assert attrs["guard.decision"] == "allow" and attrs["guard.outcome"] == "ok"
    assert attrs["guard.target.type"] == "tool"
    assert attrs["guard.pii.findings"] > 0 and "EMAIL_ADDRESS" in attrs["guard.pii.entity_types"]
    assert allowed.status == "unset"
    children = receiver.children(allowed)
    names = [(s.name, s.attributes.get("guard.direction")) for s in children]
    assert names[:5] == [*((n, "client_to_server") for n in REQUEST_STAGES), ("upstream", None)], names
    assert all(direction == "server_to_client" for _, direction in names[5:]) and ("pii", "server_to_client") in names
    upstream = children[4]
    assert upstream.kind == "client" and upstream.attributes["guard.outcome"] == "ok"
    response_pii = next(s for s in children[5:] if s.name == "pii")
    assert response_pii.attributes["guard.verdict"] == "rewrite" and response_pii.attributes["guard.pii.findings"] > 0
    assert all(allowed.start_ns <= s.start_ns <= s.end_ns <= allowed.end_ns for s in children)

    # The upstream got guard's upstream span as its parent, in _meta (stdio has no headers).
    sent = [r for r in read_record(record) if r.get("name") == "find_customer"]
    assert sent and sent[0]["params"]["_meta"]["traceparent"] == f"00-{CLIENT_TRACE}-{upstream.span_id}-01"

    # A call without a client trace context starts a trace of its own.
    other = tool_root(receiver, "get_customer")
    assert other.trace_id != CLIENT_TRACE and other.parent_span_id == ""
    assert other.attributes["guard.outcome"] == "ok" and other.attributes["guard.pii.findings"] > 0

    # The denied call: the authorize stage rejected it; nothing went upstream.
    refused = tool_root(receiver, "delete_customer")
    attrs = refused.attributes
    assert attrs["guard.decision"] == "deny" and attrs["guard.outcome"] == "rejected"
    assert attrs["guard.rejected_by"] == "authorize" and attrs["rpc.jsonrpc.error_code"] == -31001
    assert refused.status == "error"
    stages = receiver.children(refused)
    assert [s.name for s in stages] == REQUEST_STAGES
    assert stages[1].attributes["guard.verdict"] == "reject" and stages[1].attributes["guard.decision"] == "deny"

    # A resource URI is recorded only in the protected form the audit record holds.
    read = [s for s in receiver.roots() if s.name == "resources/read"]
    assert len(read) == 1 and read[0].attributes["guard.target.type"] == "resource"
    assert EMAIL not in read[0].attributes["guard.target.name"]

    # Every client message got its root span (initialize, initialized, the three calls at least).
    methods = [s.attributes["mcp.method.name"] for s in receiver.roots()]
    assert methods.count("tools/call") == 3 and "initialize" in methods and "notifications/initialized" in methods

    # Nothing personal, no argument, no protected token, no credential in what left guard.
    exported = b"".join(receiver.raw)
    assert exported
    for value in personal_values() | {"Johnson", EMAIL, *result_tokens, *tokens.values()}:
        assert value.encode() not in exported, value
    assert "customer_id" not in exported.decode("utf-8", "replace")

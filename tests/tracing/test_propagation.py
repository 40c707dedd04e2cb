"""Trace context across guard, and exporter faults that must not touch traffic.

A real guard with tracing on in front of a Streamable HTTP upstream that records every header
(:mod:`tests.support.http_upstream`), a real OTLP/HTTP receiver (:mod:`tests.tracing.receiver`):

* the upstream receives guard's ``upstream`` span as the W3C ``traceparent`` header, in the
  client's trace when the client sent one in ``params._meta`` (and as ``_meta.traceparent`` too);
* a malformed ``_meta.traceparent`` starts a new trace (W3C Trace Context section 3.2.2.3: an
  invalid ``traceparent`` is ignored) instead of failing the request, and is replaced upstream;
* a Streamable HTTP client at guard's front door is traced by the same relay as a WebSocket one;
* a collector that is down or failing costs spans, never an answer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from guard.config import parse
from guard.runtime import build_runtime
from tests.front.helpers import modern_headers, modern_request
from tests.support.guard_server import free_port, running_runtime
from tests.support.http_upstream import EchoHttpUpstream, http_upstream
from tests.tracing.receiver import OtlpReceiver, otlp_receiver

pytestmark = pytest.mark.e2e
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
SECRET = "s3cr3t-argument-value"


def call(rid: int, meta: dict[str, Any] | None = None) -> str:
    params: dict[str, Any] = {"name": "lookup", "arguments": {"q": SECRET}}
    if meta is not None:
        params["_meta"] = meta
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params})


@contextlib.asynccontextmanager
async def traced_guard(endpoint: str, **tracing: Any) -> AsyncIterator[tuple[str, EchoHttpUpstream]]:
    async with http_upstream() as (url, upstream):
        cfg = {"upstreams": {"u": {"url": url}}, "auth": {"anonymous_servers": ["u"]},
               "tracing": {"endpoint": endpoint, "schedule_delay": 0.2, "export_timeout": 2.0, **tracing}}
        async with running_runtime(build_runtime(parse(cfg))) as base:
            yield f"{base}/mcp/u", upstream


async def ask(ws: Any, frame: str) -> dict[str, Any]:
    await ws.send(frame)
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


def parents(receiver: OtlpReceiver) -> dict[str, str]:
    return {s.span_id: s.parent_span_id for s in receiver.spans}


async def test_http_upstream_gets_guards_span_as_traceparent_continuing_the_clients_trace() -> None:
    async with otlp_receiver() as (endpoint, receiver):
        async with traced_guard(endpoint) as (url, upstream):
            async with connect(url, subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
                continued = await ask(ws, call(1, {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
                                                   "tracestate": "vendor=opaque"}))
                fresh = await ask(ws, call(2))
                malformed = await ask(ws, call(3, {"traceparent": "00-not-a-trace-context-01"}))
        assert [r.get("id") for r in (continued, fresh, malformed)] == [1, 2, 3]
        assert all("result" in r for r in (continued, fresh, malformed))
    upstream_spans = {s.span_id: s for s in receiver.spans if s.name == "upstream"}
    roots = {s.span_id: s for s in receiver.roots()}
    assert len(upstream_spans) == 3 and len(roots) == 3
    sent = [(h.get("traceparent"), h.get("tracestate"), json.loads(b)) for h, b in
            zip(upstream.headers, upstream.received, strict=True) if b"tools/call" in b]
    assert len(sent) == 3

    header, state, body = sent[0]  # the client's trace, continued through guard's spans
    version, trace_id, span_id, flags = header.split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01") and state == "vendor=opaque"
    assert span_id in upstream_spans and roots[upstream_spans[span_id].parent_span_id].parent_span_id == CLIENT_SPAN
    assert body["params"]["_meta"] == {"traceparent": header, "tracestate": "vendor=opaque"}

    header, _, body = sent[1]  # no client context: guard's own trace, still propagated
    trace_id, span_id = header.split("-")[1:3]
    assert trace_id != CLIENT_TRACE and span_id in upstream_spans and "_meta" not in body["params"]

    header, _, body = sent[2]  # a malformed context is not continued: guard's own trace replaces it
    trace_id, span_id = header.split("-")[1:3]
    root = roots[upstream_spans[span_id].parent_span_id]
    assert root.parent_span_id == "" and trace_id == root.trace_id
    assert body["params"]["_meta"] == {"traceparent": header}
    assert SECRET.encode() not in b"".join(receiver.raw)


async def test_streamable_http_clients_are_traced_by_the_same_relay() -> None:
    body = modern_request("tools/call", {"name": "lookup", "arguments": {"q": SECRET}}, request_id=7)
    body["params"]["_meta"]["traceparent"] = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    async with otlp_receiver() as (endpoint, receiver):
        async with traced_guard(endpoint) as (url, upstream):
            async with httpx.AsyncClient(timeout=30) as client:
                reply = await client.post(url.replace("ws://", "http://", 1), json=body,
                                          headers=modern_headers("tools/call", "lookup"))
        assert reply.status_code == 200, reply.text
    roots = [s for s in receiver.roots() if s.attributes.get("gen_ai.tool.name") == "lookup"]
    assert len(roots) == 1 and roots[0].attributes["guard.outcome"] == "ok"
    assert (roots[0].trace_id, roots[0].parent_span_id) == (CLIENT_TRACE, CLIENT_SPAN)
    upstream_span = next(s for s in receiver.children(roots[0]) if s.name == "upstream")
    assert upstream.headers[-1]["traceparent"] == f"00-{CLIENT_TRACE}-{upstream_span.span_id}-01"
    forwarded = json.loads(upstream.received[-1])["params"]["_meta"]
    assert forwarded == {**body["params"]["_meta"], "traceparent": upstream.headers[-1]["traceparent"]}


async def test_sampled_out_messages_export_nothing_but_pass_the_context_on() -> None:
    """sample_ratio = 0: no spans for new traces, yet the upstream still learns the (unsampled)
    context; a client's sampled context is still honoured (parent-based sampling)."""
    async with otlp_receiver() as (endpoint, receiver):
        async with traced_guard(endpoint, sample_ratio=0.0) as (url, upstream):
            async with connect(url, subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
                assert "result" in await ask(ws, call(1))
                assert "result" in await ask(ws, call(2, {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00"}))
                assert "result" in await ask(ws, call(3, {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}))
    headers = [h["traceparent"] for h, b in zip(upstream.headers, upstream.received, strict=True)
               if b"tools/call" in b]
    own, unsampled, sampled = (h.split("-") for h in headers)
    assert int(own[3], 16) & 1 == 0 and own[1] != CLIENT_TRACE  # guard's own trace, not sampled
    assert (unsampled[1], int(unsampled[3], 16) & 1) == (CLIENT_TRACE, 0)
    assert (sampled[1], sampled[3]) == (CLIENT_TRACE, "01")
    assert {s.trace_id for s in receiver.spans} == {CLIENT_TRACE}  # only the client-sampled call was recorded
    assert [s.name for s in receiver.roots()] == ["tools/call"]
    upstream_span = next(s for s in receiver.spans if s.name == "upstream")
    assert sampled[2] == upstream_span.span_id


@pytest.mark.parametrize("collector", ["absent", "failing"])
async def test_collector_down_or_failing_never_costs_an_answer(collector: str) -> None:
    async with otlp_receiver() as (live, receiver):
        receiver.status_code = 503
        endpoint = live if collector == "failing" else f"http://127.0.0.1:{free_port()}/v1/traces"
        async with traced_guard(endpoint) as (url, _):
            async with connect(url, subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
                replies = [await ask(ws, call(rid)) for rid in range(1, 41)]
    assert [r["id"] for r in replies] == list(range(1, 41))
    assert all("result" in r for r in replies)
    if collector == "failing":
        assert receiver.raw  # the exporter did try, and was refused
    assert not receiver.spans

"""A real OTLP/HTTP trace receiver on loopback for tests: decodes what exporters send.

Accepts ``POST /v1/traces`` with an ``application/x-protobuf`` body (gzip or not), decodes it
with the protobuf classes of ``opentelemetry-proto`` (the OTLP specification's own schema) and
answers with an ``ExportTraceServiceResponse``, as a collector does. ``raw`` keeps every body
as received (to search the exported bytes for values that must never be there); ``spans`` holds
the decoded spans, flattened.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.guard_server import free_socket, serving

SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    attributes: dict[str, Any]
    status: str
    start_ns: int
    end_ns: int
    resource: dict[str, Any]


@dataclass
class OtlpReceiver:
    raw: list[bytes] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    status_code: int = 200
    """What to answer (a test makes the collector fail with 503)."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def traces(request: Request) -> Response:
            body = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            self.raw.append(body)
            if self.status_code != 200:
                return Response(status_code=self.status_code)
            decoded = ExportTraceServiceRequest()
            decoded.ParseFromString(body)
            for resource_spans in decoded.resource_spans:
                resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(ReceivedSpan(
                            trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(), name=span.name,
                            kind=SPAN_KINDS.get(span.kind, str(span.kind)),
                            attributes={kv.key: _value(kv.value) for kv in span.attributes},
                            status=STATUS_CODES.get(span.status.code, str(span.status.code)),
                            start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                            resource=resource))
            self.arrived.set()
            return Response(ExportTraceServiceResponse().SerializeToString(),
                            media_type="application/x-protobuf")

        return Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])

    def roots(self) -> list[ReceivedSpan]:
        """Spans without a parent in guard's export (guard's per-message spans, unless continued)."""
        return [s for s in self.spans if s.kind == "server"]

    def children(self, parent: ReceivedSpan) -> list[ReceivedSpan]:
        """``parent``'s child spans in start order."""
        return sorted((s for s in self.spans if s.parent_span_id == parent.span_id and s.trace_id == parent.trace_id),
                      key=lambda s: s.start_ns)


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[str, OtlpReceiver]]:
    """Serve an :class:`OtlpReceiver` on a free loopback port; yields its traces URL and the receiver."""
    receiver = OtlpReceiver()
    server = uvicorn.Server(uvicorn.Config(receiver.app(), log_config=None, lifespan="off"))
    async with serving(server, free_socket()) as port:
        yield f"http://127.0.0.1:{port}/v1/traces", receiver

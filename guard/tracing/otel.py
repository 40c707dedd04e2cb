"""The OpenTelemetry tracer: spans per client message, exported over OTLP/HTTP in batches.

Imported only when ``[tracing]`` is enabled (:func:`guard.tracing.build_tracer`). Uses its own
``TracerProvider`` (never the process-global one, so libraries in the same process cannot
add spans or change the exporter), a parent-based ratio sampler, and a
``BatchSpanProcessor``: ending a span appends it to a bounded in-memory queue and the export
happens on the processor's own thread, so a slow, failing or absent collector costs at most
the dropped spans (queue full), never a delayed or failed message.

Trace context: W3C Trace Context (https://www.w3.org/TR/trace-context/) ``traceparent`` and
``tracestate``, read from the request's ``params._meta`` (MCP's ``_meta`` is where such
out-of-band fields live, ``basic/index#_meta``) and written as HTTP headers to Streamable HTTP
upstreams, and into ``_meta`` when the client sent it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from guard import __version__, mcp
from guard.context import Direction, MessageContext, SessionInfo, Verdict
from guard.jsonrpc import Message
from guard.tracing import attributes as attrs
from guard.tracing.base import MessageTrace, Tracer, reset_upstream_headers, set_upstream_headers
from guard.tracing.settings import TracingSettings

log = logging.getLogger("guard.tracing")

TRACE_KEYS = ("traceparent", "tracestate")
"""The W3C Trace Context fields guard reads from ``params._meta`` and propagates."""
MAX_TRACESTATE = 512
"""W3C Trace Context section 3.3.1.1: vendors may drop a longer ``tracestate``; guard ignores it."""
UNTRACED_STAGES = frozenset({"metrics"})
"""Pipeline stages that are bookkeeping, not a decision: no span of their own."""
SHUTDOWN_GRACE = 2.0
"""Seconds added to the export timeout for the final flush at shutdown."""

_PROPAGATOR = TraceContextTextMapPropagator()


def _carrier(message: Message) -> dict[str, str]:
    """The trace context a client sent in ``params._meta`` (only well-sized strings)."""
    meta = mcp.meta_of(message.params)
    carrier: dict[str, str] = {}
    for key in TRACE_KEYS:
        value = meta.get(key)
        if isinstance(value, str) and len(value) <= MAX_TRACESTATE:
            carrier[key] = value
    return carrier


def _headers_of(span: Span) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) naming ``span`` as the parent."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace_api.set_span_in_context(span, Context()))
    return carrier


def _with_meta(message: Message, headers: dict[str, str]) -> Message:
    """The request with ``headers`` in place of the trace context its ``params._meta`` carried."""
    meta = {**mcp.meta_of(message.params), **headers}
    return message.replace_payload({**message.payload, "params": {**message.params, "_meta": meta}})


def _shown(url: str) -> str:
    """The endpoint for a log line: scheme, host, port and path, never credentials or a query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


class UnsampledTrace(MessageTrace):
    """A message whose trace is not recorded (sampled out): no spans, which keeps its cost near
    zero, but the context still travels on (sampled flag off, so the upstream need not record
    its part either)."""

    __slots__ = ("_headers", "_root", "_sent_meta")

    def __init__(self, root: Span, sent_meta: bool) -> None:
        self._root = root
        self._sent_meta = sent_meta
        self._headers: dict[str, str] | None = None

    def _context_headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = _headers_of(self._root)
        return self._headers

    def upstream_start(self, message: Message) -> Message:
        return _with_meta(message, self._context_headers()) if self._sent_meta else message

    @contextlib.contextmanager
    def propagating(self) -> Iterator[None]:
        token = set_upstream_headers(self._context_headers())
        try:
            yield
        finally:
            reset_upstream_headers(token)


class OtelMessageTrace(MessageTrace):
    """One client message's span tree (see :mod:`guard.tracing`)."""

    __slots__ = ("_attributes", "_done", "_findings", "_offset", "_parent", "_root", "_sent_meta", "_tracer",
                 "_types", "_upstream")

    def __init__(self, tracer: trace_api.Tracer, root: Span, sent_meta: bool) -> None:
        self._tracer = tracer
        self._root = root
        self._parent = trace_api.set_span_in_context(root, Context())
        self._offset = time.time_ns() - time.perf_counter_ns()
        self._upstream: Span | None = None
        self._sent_meta = sent_meta
        self._done = False
        self._attributes: dict[str, Any] = {}
        self._findings = 0
        self._types: set[str] = set()

    def _ns(self, perf: float) -> int:
        return int(perf * 1e9) + self._offset

    def stage(self, name: str, ctx: MessageContext, started: float, ended: float, verdict: Verdict) -> None:
        if name in UNTRACED_STAGES or self._done:
            return
        direction = ctx.direction.value
        span_attributes: dict[str, Any] = {"guard.direction": direction, "guard.verdict": attrs.verdict_name(verdict)}
        if verdict.rejected:
            span_attributes.update(attrs.rejection_attributes(verdict))
        if name == "authorize":
            decision = attrs.decision_attributes(ctx)
            span_attributes.update(decision)
            if ctx.direction is Direction.CLIENT_TO_SERVER:
                self._attributes.update(decision)
        elif name == "pii":
            count, types = attrs.findings_of(ctx)
            span_attributes["guard.pii.findings"] = count
            self._findings += count
            self._types |= types
        if ctx.direction is Direction.CLIENT_TO_SERVER:
            self._attributes.update(attrs.target_attributes(ctx))
            if ctx.message.method is None and "mcp.method.name" not in self._attributes:
                answered = attrs.method_name(ctx.method)  # a client's answer: named after the request it answers
                self._attributes["mcp.method.name"] = answered
                self._root.update_name(answered)
        span = self._tracer.start_span(name, context=self._parent, kind=SpanKind.INTERNAL,
                                       attributes=span_attributes, start_time=self._ns(started))
        if verdict.rejected:
            span.set_status(Status(StatusCode.ERROR, "rejected"))
        span.end(end_time=self._ns(ended))

    def upstream_start(self, message: Message) -> Message:
        if self._done:
            return message
        self._upstream = self._tracer.start_span("upstream", context=self._parent, kind=SpanKind.CLIENT)
        return _with_meta(message, self._context_headers()) if self._sent_meta else message

    def _context_headers(self) -> dict[str, str]:
        return _headers_of(self._upstream) if self._upstream is not None else {}

    @contextlib.contextmanager
    def propagating(self) -> Iterator[None]:
        token = set_upstream_headers(self._context_headers())
        try:
            yield
        finally:
            reset_upstream_headers(token)

    def upstream_end(self, outcome: str) -> None:
        span, self._upstream = self._upstream, None
        if span is None:
            return
        span.set_attribute("guard.outcome", attrs.bounded_outcome(outcome))
        if outcome not in attrs.OK_OUTCOMES and outcome not in attrs.NEUTRAL_OUTCOMES:
            span.set_status(Status(StatusCode.ERROR, attrs.bounded_outcome(outcome)))
        span.end()

    def finish(self, outcome: str, ctx: MessageContext | None = None) -> None:
        if self._done:
            return
        self._done = True
        if self._upstream is not None:
            self.upstream_end(outcome)
        root = self._root
        outcome = attrs.bounded_outcome(outcome)
        final = dict(self._attributes)
        final["guard.outcome"] = outcome
        if self._findings or self._types:
            final["guard.pii.findings"] = self._findings
            final["guard.pii.entity_types"] = sorted(self._types)
        if ctx is not None and ctx.verdict.rejected:
            final.update(attrs.rejection_attributes(ctx.verdict))
        elif outcome not in attrs.OK_OUTCOMES and outcome not in attrs.NEUTRAL_OUTCOMES:
            final.setdefault("error.type", outcome)
        root.set_attributes(final)
        if outcome not in attrs.OK_OUTCOMES and outcome not in attrs.NEUTRAL_OUTCOMES:
            root.set_status(Status(StatusCode.ERROR, outcome))
        root.end()


class OtelTracer(Tracer):
    """Traces over OTLP/HTTP with the SDK's batch processor (see module docstring)."""

    enabled = True

    def __init__(self, settings: TracingSettings, *, exporter: Any = None) -> None:
        self.settings = settings
        resource = Resource.create({"service.name": settings.service_name, "service.version": __version__})
        self._provider = TracerProvider(resource=resource,
                                        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
        if exporter is None:
            exporter = OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers),
                                        timeout=settings.export_timeout)
        self._processor = BatchSpanProcessor(
            exporter,
            max_queue_size=settings.max_queue_size,
            max_export_batch_size=min(512, settings.max_queue_size),
            schedule_delay_millis=settings.schedule_delay * 1000,
            export_timeout_millis=settings.export_timeout * 1000,
        )
        self._provider.add_span_processor(self._processor)
        self._tracer = self._provider.get_tracer("guard", __version__)
        log.info("tracing on: OTLP/HTTP to %s, sample ratio %s", _shown(settings.endpoint), settings.sample_ratio)

    def start(self, session: SessionInfo, message: Message) -> MessageTrace:
        attributes: dict[str, Any] = {"guard.server": session.server, "guard.message.kind": message.kind.value}
        if message.method is not None:
            name = attributes["mcp.method.name"] = attrs.method_name(message.method)
            carrier = _carrier(message)
        else:  # a client's answer to a server request: renamed once the request it answers is known
            name, carrier = "response", {}
        parent = _PROPAGATOR.extract(carrier, context=Context()) if carrier else Context()
        root = self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        if not root.is_recording():
            return UnsampledTrace(root, "traceparent" in carrier)
        return OtelMessageTrace(self._tracer, root, "traceparent" in carrier)

    async def aclose(self) -> None:
        """Flush what is queued (bounded) and stop the exporter thread."""
        timeout = self.settings.export_timeout + SHUTDOWN_GRACE
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.to_thread(self._provider.shutdown), timeout)

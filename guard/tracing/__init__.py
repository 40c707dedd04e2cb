"""Traces of what guard does with each client message (OpenTelemetry; off by default).

The relay and the pipeline call this interface at a few points; every transport feeds the
same relay, so WebSocket, Streamable HTTP and HTTP+SSE sessions are traced alike. With
tracing off (no ``[tracing]`` section) the tracer is :data:`NO_TRACER`, every message gets
:data:`NO_TRACE`, whose methods do nothing, and OpenTelemetry is never imported.

With tracing on (:mod:`guard.tracing.otel`) one client message is one trace tree::

    tools/call                   SERVER    one per client message (request, notification, response)
    ├── authenticate             INTERNAL  each pipeline stage that ran on the request
    ├── authorize                          (guard.direction = client_to_server)
    ├── pii
    ├── audit
    ├── upstream                 CLIENT    forwarded -> the upstream's answer (requests only)
    ├── authenticate             INTERNAL  the stages that ran on the answer
    ├── authorize                          (guard.direction = server_to_client)
    ├── pii
    └── audit

A message sampled out (``sample_ratio``, or a client's unsampled ``traceparent``) makes no spans
at all; its trace context is still passed upstream, unsampled.

Spans carry the server, method, tool (or prompt) name, decision and outcome, never argument
values, results, resource URIs or anything else a message carries (:mod:`guard.tracing.attributes`).
A W3C ``traceparent`` (and ``tracestate``) in the request's ``params._meta`` (the MCP ``_meta``
convention) makes guard's span a child of the client's; guard sends its ``upstream`` span as
the ``traceparent`` header to Streamable HTTP upstreams (W3C Trace Context, section 3) and in
``_meta`` when the client sent one there.
"""

from __future__ import annotations

from guard.errors import ConfigError
from guard.tracing.base import NO_TRACE, NO_TRACER, MessageTrace, Tracer, upstream_headers
from guard.tracing.settings import TracingSettings

__all__ = ["NO_TRACE", "NO_TRACER", "MessageTrace", "Tracer", "TracingSettings", "build_tracer", "upstream_headers"]


def build_tracer(settings: TracingSettings) -> Tracer:
    """The tracer ``[tracing]`` asks for: :data:`NO_TRACER` when off, an OpenTelemetry one when on.

    Raises :class:`~guard.errors.ConfigError` when tracing is on but the OpenTelemetry SDK or
    its OTLP/HTTP exporter is not installed (``pip install 'guard[tracing]'``): guard refuses to
    start rather than silently run without the traces it was configured to send.
    """
    if not settings.enabled:
        return NO_TRACER
    try:
        from guard.tracing.otel import OtelTracer
    except ImportError as exc:
        raise ConfigError([f"tracing: OpenTelemetry is not installed ({exc.name}): "
                           "pip install 'guard[tracing]'"]) from exc
    return OtelTracer(settings)

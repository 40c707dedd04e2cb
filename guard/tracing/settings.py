"""``[tracing]`` configuration: OpenTelemetry traces over OTLP/HTTP, off by default.

Parsed by :func:`parse_tracing`, which collects every problem (never ``assert``). Reading
these settings imports nothing from OpenTelemetry: the SDK is loaded only when
``enabled = true`` (:func:`guard.tracing.build_tracer`), and is then required (install
``guard[tracing]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guard import configtools as ct

_KEYS = {"enabled", "endpoint", "service_name", "sample_ratio", "headers", "max_queue_size", "export_timeout",
         "schedule_delay"}

DEFAULT_ENDPOINT = "http://127.0.0.1:4318/v1/traces"
"""OTLP/HTTP's default port (4318) and traces path, on loopback (a collector sidecar or agent)."""


@dataclass(frozen=True)
class TracingSettings:
    """``[tracing]``: OpenTelemetry traces (see docs/operators.md, "Tracing")."""

    enabled: bool = False
    """Export traces. Off when the section is absent; on by default once ``[tracing]`` exists."""
    endpoint: str = DEFAULT_ENDPOINT
    """OTLP/HTTP traces endpoint, the full URL including ``/v1/traces`` (``${VAR}`` expanded)."""
    service_name: str = "guard"
    """The ``service.name`` resource attribute every span carries."""
    sample_ratio: float = 1.0
    """Fraction of new traces recorded (0..1). A client's ``traceparent`` decides for the
    traces it continues (parent-based sampling)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra HTTP headers for the exporter, e.g. a collector's credentials (``${VAR}`` expanded)."""
    max_queue_size: int = 2048
    """Finished spans waiting for export; beyond it spans are dropped, traffic is never held up."""
    export_timeout: float = 5.0
    """Seconds one export to the collector may take (it runs on the exporter's own thread)."""
    schedule_delay: float = 1.0
    """Seconds between exports of queued spans."""


def parse_tracing(raw: Mapping[str, Any], problems: ct.Problems, *, present: bool) -> TracingSettings:
    """``[tracing]`` from TOML; ``present`` says whether the section exists (then it is on by default)."""
    path = "tracing"
    ct.unknown_keys(raw, _KEYS, path, problems)
    d = TracingSettings()
    enabled = ct.get(raw, "enabled", bool, present, path, problems)
    endpoint = ct.expand(ct.get(raw, "endpoint", str, d.endpoint, path, problems), "tracing.endpoint", problems)
    if not endpoint.startswith(("http://", "https://")):
        problems.add("tracing.endpoint", "must be an http:// or https:// URL (OTLP/HTTP)")
        endpoint = d.endpoint
    service_name = ct.get(raw, "service_name", str, d.service_name, path, problems)
    if not service_name.strip():
        problems.add("tracing.service_name", "must not be empty")
        service_name = d.service_name
    ratio = ct.get(raw, "sample_ratio", float, d.sample_ratio, path, problems)
    if not 0.0 <= ratio <= 1.0:
        problems.add("tracing.sample_ratio", "must be between 0 and 1")
        ratio = d.sample_ratio
    return TracingSettings(
        enabled=enabled,
        endpoint=endpoint,
        service_name=service_name,
        sample_ratio=ratio,
        headers=ct.str_map(raw, "headers", path, problems),
        max_queue_size=ct.positive(raw, "max_queue_size", int, d.max_queue_size, path, problems),
        export_timeout=ct.positive(raw, "export_timeout", float, d.export_timeout, path, problems),
        schedule_delay=ct.positive(raw, "schedule_delay", float, d.schedule_delay, path, problems),
    )

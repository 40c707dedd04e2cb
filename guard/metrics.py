"""Prometheus metrics: one registry per :class:`Metrics`, fed by a pipeline stage and events.

Series (all prefixed ``guard_``)::

    guard_info{version}                                          1
    guard_connections_active{server}                             gauge
    guard_connections_total{server}                              counter (accepted sessions)
    guard_connections_closed_total{server,code}                  counter (WebSocket close code)
    guard_auth_failures_total{server,reason}                     counter (refused handshakes)
    guard_messages_total{server,direction,kind}                  counter (every message seen)
    guard_requests_total{server,method,decision}                 counter; decision: allow, deny, reject
    guard_responses_total{server,method,outcome}                 counter; outcome: ok, error, is_error, rejected
    guard_pii_findings_total{server,entity_type,action}          counter
    guard_stage_duration_seconds{stage,direction}                histogram (ctx.timings)
    guard_upstream_latency_seconds{server,method}                histogram (request in -> response in)
    guard_upstream_errors_total{server,kind}                     counter
    guard_circuit_breaker_state{server,state}                    gauge, 1 for the current state
    guard_upstream_reachable{server}                             gauge, 1/0 at the last /readyz?upstream=NAME
    guard_policy_reload_success                                  gauge, 1 if the last reload succeeded
    guard_policy_last_success_timestamp_seconds                  gauge, epoch of the last good load
    guard_policy_reloads_total{result}                           counter; result: ok, error

Label values that come from the network (method names, reasons, close codes) are
bounded: unknown MCP methods become ``other`` and every label keeps at most
``max_label_values`` distinct values (then ``other``), so a client cannot grow the
registry without bound by inventing method names. Values never include arguments,
targets, principals or PII: only counts and types.

Each :class:`Metrics` owns a :class:`~prometheus_client.CollectorRegistry` (not the
process-global one) so tests and several runtimes in one process do not collide.
"""

from __future__ import annotations

import collections
import enum
import hmac
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from guard import __version__, mcp
from guard.context import Direction, MessageContext
from guard.jsonrpc import Kind
from guard.metrics_flow import LoopSeries, MessageSeries

STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BREAKER_STATES = ("closed", "open", "half_open")
OTHER = "other"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic Prometheus text format, which ``generate_latest`` writes and every scraper reads."""
_SAFE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,64}$")
_DIRECTIONS = {Direction.CLIENT_TO_SERVER: "client_to_server", Direction.SERVER_TO_CLIENT: "server_to_client"}


class _Bounded:
    """Maps raw label values to at most ``limit`` distinct safe values per label, then ``other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: dict[str, set[str]] = {}

    def __call__(self, label: str, value: object) -> str:
        text = str(value.value if isinstance(value, enum.Enum) else value)
        if text == OTHER or not _SAFE.fullmatch(text):
            return OTHER
        seen = self._seen.setdefault(label, set())
        if text in seen:
            return text
        if len(seen) >= self._limit:
            return OTHER
        seen.add(text)
        return text


def _method_label(method: str | None) -> str:
    if method is None:
        return "none"
    return method if mcp.is_known_method(method) else OTHER


def _family(series: LoopSeries, with_samples: bool = True) -> Metric:
    """A per-message series (:mod:`guard.metrics_flow`) as ``Counter`` or ``Histogram`` export it.

    Including the ``_created`` series: the per-message series are plain numbers updated on the
    event loop, exported here at scrape time.
    """
    created = getattr(prometheus_client.metrics, "_use_created", True)
    if series.buckets is None:
        counter = CounterMetricFamily(series.name, series.documentation, labels=series.labelnames)
        for key, value in list(series.values.items()) if with_samples else ():
            counter.add_metric(key, value.value, created=value.created if created else None)
        return counter
    histogram = HistogramMetricFamily(series.name, series.documentation, labels=series.labelnames)
    les = [floatToGoString(b) for b in series.buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
    for key, value in list(series.values.items()) if with_samples else ():
        running, cumulative = 0, []
        for le, count in zip(les, value.counts, strict=True):
            running += count
            cumulative.append((le, float(running)))
        histogram.add_metric(key, cumulative, value.total)
        if created:
            histogram.samples.append(Sample(series.name + "_created", dict(zip(series.labelnames, key, strict=True)),
                                            value.created))
    return histogram


class _LoopCollector:
    """Exports the per-message series (:class:`~guard.metrics_flow.LoopSeries`) into a registry at scrape time."""

    def __init__(self, metrics: Sequence[LoopSeries]) -> None:
        self._metrics = tuple(metrics)

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield _family(metric)

    def describe(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield _family(metric, with_samples=False)


class Metrics:
    """guard's metrics registry and the small functions the rest of the code calls."""

    def __init__(self, max_label_values: int = 200) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._label = _Bounded(max_label_values)
        r = self.registry
        info = Gauge("guard_info", "guard build information.", ["version"], registry=r)
        info.labels(version=__version__).set(1)
        self.connections_active = Gauge("guard_connections_active", "Open client sessions.", ["server"],
                                        registry=r)
        self.connections = Counter("guard_connections", "Client sessions accepted.", ["server"], registry=r)
        self.connections_closed = Counter("guard_connections_closed", "Client sessions closed, by close code.",
                                          ["server", "code"], registry=r)
        self.auth_failures = Counter("guard_auth_failures", "Refused WebSocket handshakes, by reason.",
                                     ["server", "reason"], registry=r)
        # The per-message series (updated for every message, from the event loop only).
        self.messages = LoopSeries("guard_messages", "JSON-RPC messages seen by the pipeline.",
                                    ["server", "direction", "kind"])
        self.requests = LoopSeries("guard_requests", "Requests by method and pipeline decision (allow, deny, reject).",
                                    ["server", "method", "decision"])
        self.responses = LoopSeries("guard_responses", "Responses by method and outcome.",
                                     ["server", "method", "outcome"])
        self.pii_findings = LoopSeries("guard_pii_findings", "PII findings by entity type and action taken.",
                                        ["server", "entity_type", "action"])
        self.stage_duration = LoopSeries("guard_stage_duration_seconds", "Time spent in each pipeline stage.",
                                          ["stage", "direction"], buckets=STAGE_BUCKETS)
        self.upstream_latency = LoopSeries(
            "guard_upstream_latency_seconds",
            "From a request entering guard to its response arriving from the upstream.",
            ["server", "method"], buckets=UPSTREAM_BUCKETS)
        r.register(_LoopCollector([self.messages, self.requests, self.responses, self.pii_findings,
                                   self.stage_duration, self.upstream_latency]))
        self.upstream_errors = Counter("guard_upstream_errors", "Upstream failures by kind.", ["server", "kind"],
                                       registry=r)
        self.breaker = Gauge("guard_circuit_breaker_state", "Circuit breaker state per upstream (1 = current).",
                             ["server", "state"], registry=r)
        self.upstream_up = Gauge("guard_upstream_reachable",
                                 "1 if the upstream was reachable at the last /readyz?upstream=NAME, else 0.",
                                 ["server"], registry=r)
        self.policy_ok = Gauge("guard_policy_reload_success", "1 if the last policy (re)load succeeded, else 0.",
                               registry=r)
        self.policy_loaded_at = Gauge("guard_policy_last_success_timestamp_seconds",
                                      "Unix time of the last successful policy load.", registry=r)
        self.policy_reloads = Counter("guard_policy_reloads", "Policy (re)loads by result.", ["result"], registry=r)
        self.flow = MessageSeries(self._message_children, self._stage_child, self._count_findings)
        """The per-message updates (compiled): :meth:`observe_message`, :class:`MetricsStage`."""

    # Connections ---------------------------------------------------------------------------

    def connection_opened(self, server: str) -> None:
        s = self._label("server", server)
        self.connections.labels(server=s).inc()
        self.connections_active.labels(server=s).inc()

    def connection_closed(self, server: str, code: int | None, *, was_open: bool = True) -> None:
        """A session ended; ``was_open=False`` for one that closed before it was counted as open."""
        s = self._label("server", server)
        self.connections_closed.labels(server=s, code=self._label("code", code if code is not None else "none")).inc()
        if was_open:
            self.connections_active.labels(server=s).dec()

    def auth_failure(self, server: str, reason: str | None) -> None:
        self.auth_failures.labels(server=self._label("server", server),
                                  reason=self._label("reason", reason or "unknown")).inc()

    # Messages ------------------------------------------------------------------------------

    def observe_message(self, ctx: MessageContext) -> None:
        """Count one message after the pipeline: decision, PII findings, stage times, upstream latency.

        Runs for every message (:class:`~guard.metrics_flow.MessageSeries`, compiled). With
        ``prometheus_client``'s own ``labels()`` and locks this was a third of guard's CPU per
        call (bench/README.md).
        """
        self.flow.observe(ctx)

    def _count_findings(self, ctx: MessageContext) -> None:
        """One series update per (entity type, action) of a message's PII findings, not per finding."""
        server = self._label("server", ctx.server)
        for (entity, action), n in collections.Counter((f.entity_type, f.action) for f in ctx.findings).items():
            self.pii_findings.labels(server=server, entity_type=self._label("entity_type", entity),
                                     action=self._label("action", action)).inc(n)

    def _message_children(self, server_name: str, flow: Direction, kind: Kind, method_name: str | None,
                          detail: str) -> tuple[Any, Any, Any]:
        """The ``messages``, ``requests``/``responses`` and ``upstream_latency`` children for one combination."""
        server = self._label("server", server_name)
        counted = self.messages.labels(server=server, direction=_DIRECTIONS[flow], kind=kind.value)
        method = self._label("method", _method_label(method_name))
        if kind is Kind.REQUEST:
            return counted, self.requests.labels(server=server, method=method, decision=detail), None
        if kind is Kind.RESULT or kind is Kind.ERROR:
            return (counted, self.responses.labels(server=server, method=method, outcome=detail),
                    self.upstream_latency.labels(server=server, method=method))
        return counted, None, None

    def _stage_child(self, stage: str, flow: Direction) -> Any:
        return self.stage_duration.labels(stage=self._label("stage", stage), direction=_DIRECTIONS[flow])

    # Upstreams and policy ------------------------------------------------------------------

    def upstream_error(self, server: str, kind: str) -> None:
        """An upstream failure: ``connect``, ``timeout``, ``closed``, ``bad_frame``, ``http_<status>``..."""
        self.upstream_errors.labels(server=self._label("server", server), kind=self._label("kind", kind)).inc()

    def breaker_state(self, server: str, state: str | enum.Enum) -> None:
        """Record the breaker's current state (``closed``, ``open``, ``half_open``) as a one-hot gauge."""
        s = self._label("server", server)
        current = self._label("breaker_state", state)
        for name in (*BREAKER_STATES, *([current] if current not in BREAKER_STATES else [])):
            self.breaker.labels(server=s, state=name).set(1 if name == current else 0)

    def upstream_reachable(self, server: str, ok: bool) -> None:
        self.upstream_up.labels(server=self._label("server", server)).set(1 if ok else 0)

    def policy_status(self, ok: bool, loaded_at: float) -> None:
        """A policy load or reload finished; ``loaded_at`` is its Unix time."""
        self.policy_reloads.labels(result="ok" if ok else "error").inc()
        self.policy_ok.set(1 if ok else 0)
        if ok:
            self.policy_loaded_at.set(loaded_at)

    def declare_servers(self, servers: Iterable[str]) -> None:
        """Create the per-server series at zero so dashboards see every upstream before traffic."""
        for server in servers:
            s = self._label("server", server)
            self.connections_active.labels(server=s).set(0)
            self.connections.labels(server=s)
            self.breaker_state(server, "closed")

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type (Prometheus text format 0.0.4)."""
        return generate_latest(self.registry), CONTENT_TYPE


def metrics_endpoint(metrics: Metrics, path: str = "/metrics", token: str | None = None) -> Route:
    """A starlette ``GET`` route serving ``metrics.render()``.

    With ``token`` set, scrapers must send ``Authorization: Bearer <token>`` (compared in
    constant time); otherwise restrict ``/metrics`` at the network level: it reveals
    upstream names and traffic volumes, though never message content.
    """
    expected = f"Bearer {token}".encode() if token else None

    async def endpoint(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode("latin-1", "replace")
            if not hmac.compare_digest(given, expected):
                return PlainTextResponse("unauthorized\n", status_code=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return Route(path, endpoint, methods=["GET"], name="metrics")

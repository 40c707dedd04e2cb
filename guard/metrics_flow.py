"""The per-message metric series: plain numbers updated on the event loop, for every message.

:class:`guard.metrics.Metrics` owns the registry and exports these series at scrape time
in exactly the format ``prometheus_client``'s ``Counter`` and ``Histogram`` produce; this
module is only the part that runs for every message (:class:`MessageSeries.observe`, fed
by :class:`MetricsStage`). It is compiled with mypyc (``setup.py``): interpreted, it was
~8 % of guard's instructions per call with the PII stage off (bench/README.md).

Not thread-safe: the series are updated from the event loop thread only.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from guard.context import PROCEED, Action, Direction, Event, EventKind, MessageContext, Verdict
from guard.jsonrpc import Kind

if TYPE_CHECKING:
    from guard.metrics import Metrics

CHILD_CACHE_LIMIT = 10_000
"""Label combinations whose children are cached; beyond it lookups go through ``labels()`` again."""


class CounterValue:
    """One counter child: its value and creation time (the ``_created`` series)."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramValue:
    """One histogram child: per-bucket counts (not cumulated: that is done at export), sum, creation time."""

    __slots__ = ("bounds", "counts", "created", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # bucket i counts observations <= bounds[i] (Prometheus ``le``)
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1
        self.total += amount


class LoopSeries:
    """A labelled counter (``buckets is None``) or histogram, kept as plain numbers.

    ``prometheus_client`` takes a lock and validates labels on every update, which cost more
    than the rest of the metrics stage together.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: tuple[float, ...] | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.buckets = buckets
        self.values: dict[tuple[str, ...], Any] = {}

    def labels(self, **labels: str) -> Any:
        """The child for these label values (created at zero)."""
        return self.child(tuple(str(labels[name]) for name in self.labelnames))

    def child(self, key: tuple[str, ...]) -> Any:
        value = self.values.get(key)
        if value is None:
            buckets = self.buckets
            value = HistogramValue(buckets) if buckets is not None else CounterValue()
            self.values[key] = value
        return value


def _decision(ctx: MessageContext) -> str:
    if ctx.verdict.action is not Action.REJECT:
        return "allow"
    if ctx.decision is not None and not ctx.decision.allowed:
        return "deny"
    return "reject"


def _outcome(ctx: MessageContext) -> str:
    if ctx.verdict.action is Action.REJECT:
        return "rejected"
    raw = ctx.upstream_outcome or ("error" if ctx.message.kind is Kind.ERROR else "ok")
    if raw.startswith("error"):
        return "error"
    return raw if raw in ("ok", "is_error") else "other"


Children = tuple[Any, Any, Any]
MakeChildren = Callable[[str, Direction, Kind, "str | None", str], Children]
MakeStageChild = Callable[[str, Direction], Any]
CountFindings = Callable[[MessageContext], None]


class MessageSeries:
    """Counts one message after the pipeline: decision, PII findings, stage times, upstream latency.

    The children of a label combination are looked up once (by the ``make_*`` callbacks,
    which bound the label values) and kept, up to :data:`CHILD_CACHE_LIMIT` combinations
    (method names come from the network).
    """

    def __init__(self, make_children: MakeChildren, make_stage_child: MakeStageChild,
                 count_findings: CountFindings) -> None:
        self._make_children = make_children
        self._make_stage_child = make_stage_child
        self._count_findings = count_findings
        self._children: dict[tuple[str, Direction, Kind, str | None, str], Children] = {}
        self._stage_children: dict[tuple[str, Direction], Any] = {}

    def observe(self, ctx: MessageContext) -> None:
        kind = ctx.message.kind
        if kind is Kind.REQUEST:
            detail = _decision(ctx)
        elif kind is Kind.RESULT or kind is Kind.ERROR:
            detail = _outcome(ctx)
        else:
            detail = ""
        server = ctx.session.server
        direction = ctx.direction
        key = (server, direction, kind, ctx.method, detail)
        children = self._children.get(key)
        if children is None:
            children = self._make_children(server, direction, kind, ctx.method, detail)
            if len(self._children) < CHILD_CACHE_LIMIT:
                self._children[key] = children
        counted, answered, latency = children
        counted.inc()
        if answered is not None:
            answered.inc()
        request = ctx.request
        if (latency is not None and request is not None and request.direction is Direction.CLIENT_TO_SERVER
                and direction is Direction.SERVER_TO_CLIENT):
            latency.observe(max(0.0, ctx.received_at - request.started))
        if ctx.findings:
            self._count_findings(ctx)
        stage_children = self._stage_children
        for stage, seconds in ctx.timings.items():
            stage_key = (stage, direction)
            child = stage_children.get(stage_key)
            if child is None:
                child = self._make_stage_child(stage, direction)
                if len(stage_children) < CHILD_CACHE_LIMIT:
                    stage_children[stage_key] = child
            child.observe(max(0.0, seconds))


class MetricsStage:
    """Pipeline stage that counts every message (it sees rejections) and connection events.

    Put it last so ``ctx.timings`` holds every earlier stage's time. It never rejects.
    """

    name = "metrics"
    sees_rejections = True

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._observe = metrics.flow.observe
        self._open: set[str] = set()

    async def process(self, ctx: MessageContext) -> Verdict:
        self._observe(ctx)
        return PROCEED

    async def on_event(self, event: Event) -> None:
        server = event.server or (event.session.server if event.session is not None else "unknown")
        session_id = event.session.id if event.session is not None else None
        if event.kind is EventKind.CONNECT:
            if session_id is not None:
                self._open.add(session_id)
            self.metrics.connection_opened(server)
        elif event.kind is EventKind.CLOSE:
            was_open = session_id is not None and session_id in self._open
            self._open.discard(session_id or "")
            self.metrics.connection_closed(server, event.code, was_open=was_open)
        elif event.kind is EventKind.AUTH_FAILURE:
            self.metrics.auth_failure(server, event.reason)
        elif event.kind is EventKind.POLICY_RELOAD:
            ok = event.details.get("ok")
            self.metrics.policy_status(ok if isinstance(ok, bool) else event.reason is None, event.at)

"""Fleet series, registered on the replica's own registry (:class:`guard.metrics.Metrics`)::

    guard_cluster_redis_up                          gauge, 1 while Redis answers within deadline_ms
    guard_cluster_redis_errors_total{op}            counter; op: rate, connections, breaker, heartbeat, ...
    guard_cluster_fallback_total{limit,outcome}     counter; decisions taken without Redis
                                                    (limit: rate, connections; outcome: allow, refuse)
    guard_cluster_live_replicas                     gauge, replicas holding a live lease at the last heartbeat
    guard_cluster_unknown_sessions_total{outcome}   counter; an HTTP session id this replica does not hold:
                                                    owned_elsewhere, owner_gone, ended, unknown, lookup_failed

No label carries a principal, a session id or anything a client chose.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

OPS = ("rate", "connections", "release", "breaker", "heartbeat", "sessions", "leave")


class ClusterMetrics:
    """The cluster's series; ``op`` and ``outcome`` labels come from fixed sets."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge("guard_cluster_redis_up", "1 while the fleet's Redis answers within deadline_ms.",
                        registry=registry)
        self.errors = Counter("guard_cluster_redis_errors", "Redis calls that failed or missed their deadline.",
                              ["op"], registry=registry)
        self.fallback = Counter("guard_cluster_fallback", "Limit decisions taken locally because Redis was away.",
                                ["limit", "outcome"], registry=registry)
        self.live_replicas = Gauge("guard_cluster_live_replicas", "Replicas with a live lease in Redis.",
                                   registry=registry)
        self.unknown_sessions = Counter("guard_cluster_unknown_sessions",
                                        "HTTP session ids this replica does not hold, by what Redis says of them.",
                                        ["outcome"], registry=registry)

    def redis_state(self, up: bool) -> None:
        self.up.set(1 if up else 0)

    def redis_error(self, op: str) -> None:
        self.errors.labels(op=op if op in OPS else "other").inc()

    def fell_back(self, limit: str, allowed: bool) -> None:
        self.fallback.labels(limit=limit, outcome="allow" if allowed else "refuse").inc()

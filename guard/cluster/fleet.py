"""Build a replica's shared state from :class:`~guard.config.Settings` (``[cluster]`` present)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from guard.cluster.breaker import FleetBreaker
from guard.cluster.limits import FleetConnections, FleetRateLimiter
from guard.cluster.metrics import ClusterMetrics
from guard.cluster.sessions import FleetDirectory
from guard.cluster.store import SharedStore
from guard.config import Settings
from guard.limits import BreakerState
from guard.metrics import Metrics


def replica_identity(configured: str) -> str:
    """This process's name in Redis: ``replica_id`` (default: the host name, the pod name on
    Kubernetes) and the process id, so that ``--workers`` processes of one replica, and a
    replica restarted before its old lease expired, never share counts."""
    return f"{(configured or socket.gethostname())[:40]}-{os.getpid()}"


@dataclass
class Fleet:
    """Everything a replica shares with the others."""

    store: SharedStore
    rate_limiter: FleetRateLimiter | None
    connections: FleetConnections
    breakers: dict[str, FleetBreaker]
    directory: FleetDirectory

    def readiness(self) -> tuple[str, bool, str]:
        """``/readyz`` check ``redis``: fine when Redis answers, or when the local fallback serves without it.

        With ``fallback = "local"`` a replica without Redis still enforces its share of every
        limit, so it stays ready (every replica shares the same Redis: marking them all
        unready would empty the balancer's pool); the detail says it is degraded. With
        ``fallback = "closed"`` it refuses what needs a limit, so it is not ready.
        """
        store = self.store
        if store.up:
            return "redis", True, f"connected (replica {store.replica_id}, {store.live_replicas} live)"
        if store.settings.fallback == "local":
            return "redis", True, f"degraded: {store.detail}; local fallback, limits / {store.share()}"
        return "redis", False, f"{store.detail}; fallback closed"

    async def start(self) -> None:
        await self.store.start()

    async def aclose(self) -> None:
        await self.store.aclose()


def build_fleet(settings: Settings, metrics: Metrics,
                on_breaker_change: Callable[[str, BreakerState], None]) -> Fleet:
    """The fleet's limiters, breakers and session directory over one :class:`SharedStore`."""
    cluster = settings.cluster
    store = SharedStore(cluster, replica_identity(cluster.replica_id), ClusterMetrics(metrics.registry))
    server = settings.server

    def breaker(name: str, failures: int, reset: float) -> FleetBreaker:
        return FleetBreaker(name, store, failures, reset, on_change=lambda state: on_breaker_change(name, state))

    return Fleet(
        store=store,
        rate_limiter=FleetRateLimiter(store, server.rate_limit, server.rate_burst) if server.rate_limit > 0 else None,
        connections=FleetConnections(store, server.max_connections, server.max_connections_per_principal),
        breakers={name: breaker(name, up.breaker_failures, up.breaker_reset)
                  for name, up in settings.upstreams.items()},
        directory=FleetDirectory(store),
    )

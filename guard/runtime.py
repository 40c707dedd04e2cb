"""Wiring: turn :class:`~guard.config.Settings` into the live objects a server needs.

This is the one place that orders the pipeline stages (STYLE.md rule 2)::

    authenticate -> authorize -> pii -> audit
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from guard.config import Settings
from guard.context import ANONYMOUS, Principal
from guard.limits import CircuitBreaker, ConnectionLimiter, RateLimiter
from guard.pipeline import Pipeline, Stage

log = logging.getLogger("guard.runtime")


@dataclass
class Runtime:
    """Everything a running guard shares across sessions."""

    settings: Settings
    pipeline: Pipeline
    routes: list[Any] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)
    starters: list[Any] = field(default_factory=list)
    authenticator: Any = None
    rate_limiter: RateLimiter | None = None
    connections: ConnectionLimiter = field(default_factory=lambda: ConnectionLimiter(10_000, 64))
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    async def authenticate(self, server: str, headers: dict[str, str], query: str) -> Any:
        """The principal for a handshake, or an auth failure (see :mod:`guard.auth`)."""
        if self.authenticator is None:
            return ANONYMOUS
        result: Principal | Any = await self.authenticator.authenticate(server, headers, query=query)
        return result

    async def start(self) -> None:
        for starter in self.starters:
            await starter()

    async def aclose(self) -> None:
        await self.pipeline.aclose()
        for closer in self.closers:
            try:
                await closer()
            except Exception:
                log.exception("error while shutting down")


def build_runtime(settings: Settings) -> Runtime:
    """Build stages in their fixed order from the configuration."""
    stages: list[Stage] = []
    server = settings.server
    breakers = {
        name: CircuitBreaker(up.breaker_failures, up.breaker_reset) for name, up in settings.upstreams.items()
    }
    return Runtime(
        settings=settings,
        pipeline=Pipeline(stages),
        rate_limiter=RateLimiter(server.rate_limit, server.rate_burst) if server.rate_limit > 0 else None,
        connections=ConnectionLimiter(server.max_connections, server.max_connections_per_principal),
        breakers=breakers,
    )

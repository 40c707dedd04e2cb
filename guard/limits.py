"""Admission control with an injected clock, no I/O: token buckets, connection caps, circuit breakers.

Each limit answers with a defined outcome (docs/operators.md "Limits and their defaults"): a JSON-RPC error for a
request (rate limit -31006, in-flight -31007, circuit open -31013), or an HTTP status
before the WebSocket upgrade (connection caps 503/429).
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(slots=True)
class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` stored."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float, cost: float = 1.0) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class RateLimiter:
    """One token bucket per principal, in a bounded LRU so a flood of subjects cannot grow memory."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic, max_principals: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self._clock = clock
        self._max = max_principals
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, principal_key: str) -> bool:
        if not self.enabled:
            return True
        now = self._clock()
        bucket = self._buckets.get(principal_key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self.burst, now)
            self._buckets[principal_key] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(principal_key)
        return bucket.take(now)


class ConnectionLimiter:
    """Global and per-principal caps on open client connections."""

    def __init__(self, max_total: int, max_per_principal: int) -> None:
        self.max_total = max_total
        self.max_per_principal = max_per_principal
        self.total = 0
        self._per: dict[str, int] = {}

    def acquire(self, principal_key: str) -> str | None:
        """Reserve a slot; returns ``None`` on success or the reason it was refused."""
        if self.total >= self.max_total:
            return "too_many_connections"
        if self._per.get(principal_key, 0) >= self.max_per_principal:
            return "too_many_connections_for_principal"
        self.total += 1
        self._per[principal_key] = self._per.get(principal_key, 0) + 1
        return None

    def release(self, principal_key: str) -> None:
        self.total = max(0, self.total - 1)
        left = self._per.get(principal_key, 0) - 1
        if left > 0:
            self._per[principal_key] = left
        else:
            self._per.pop(principal_key, None)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Per-upstream breaker: opens after ``threshold`` consecutive failures, probes after ``reset_after``.

    While open, requests fail fast with -31013 instead of piling onto a sick upstream.
    After ``reset_after`` seconds one probe is let through (half-open): success closes
    the breaker, failure re-opens it.
    """

    def __init__(self, threshold: int, reset_after: float, clock: Clock = time.monotonic,
                 on_change: Callable[[BreakerState], None] | None = None) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._on_change = on_change
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def _set(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        """May a request (or connection) go to the upstream now?"""
        if self.threshold <= 0 or self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.reset_after:
                return False
            self._set(BreakerState.HALF_OPEN)
            self._probe_in_flight = False
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def success(self) -> None:
        self.failures = 0
        self._probe_in_flight = False
        self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        if self.threshold <= 0:
            return
        self.failures += 1
        self._probe_in_flight = False
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self._opened_at = self._clock()
            self._set(BreakerState.OPEN)

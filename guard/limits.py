"""Admission control with an injected clock, no I/O: token buckets, connection caps, circuit breakers.

Each limit answers with a defined outcome (docs/operators.md "Limits and their defaults"): a JSON-RPC error for a
request (rate limit -31006, in-flight -31007, circuit open -31013), or an HTTP status
before the WebSocket upgrade (connection caps 503/429, circuit open 503).

The relay and the transports use them through :class:`RateLimit` and :class:`ConnectionCap`;
a fleet shares them through Redis (:mod:`guard.cluster`) behind the same two interfaces.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]


def refusal_status(reason: str) -> int:
    """The HTTP status of a refused connection: 429 for the principal's own cap, 503 otherwise
    (guard-wide cap; ``shared_state_unavailable`` when the fleet's Redis is away and ``[cluster]
    fallback = "closed"``)."""
    return 429 if reason == "too_many_connections_for_principal" else 503


class RateLimit(Protocol):
    """Per-principal request admission (error -31006 when refused)."""

    async def take(self, principal_key: str) -> bool:
        """Spend one request of ``principal_key``'s allowance; ``False`` = refuse it."""
        ...


class ConnectionCap(Protocol):
    """Caps on open client connections (HTTP 503/429 before the upgrade when refused)."""

    async def enter(self, principal_key: str) -> str | None:
        """Reserve a slot; ``None`` on success or the refusal reason."""
        ...

    def release(self, principal_key: str) -> None:
        """Give a slot back; never waits (callers release in ``finally`` blocks, even when cancelled)."""
        ...


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

    async def take(self, principal_key: str) -> bool:
        return self.allow(principal_key)


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

    async def enter(self, principal_key: str) -> str | None:
        return self.acquire(principal_key)

    def held(self, principal_key: str) -> int:
        """Connections ``principal_key`` holds here."""
        return self._per.get(principal_key, 0)

    def holders(self) -> dict[str, int]:
        """Every principal holding connections here, with how many (a copy)."""
        return dict(self._per)

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


class Outcome(enum.Enum):
    """How an upstream call ended, as far as the breaker is concerned."""

    SUCCESS = "success"
    """The upstream answered (a result or a JSON-RPC error: either way it is alive)."""
    FAILURE = "failure"
    """The upstream failed the call: it timed out, died, or the transport failed."""
    NEUTRAL = "neutral"
    """Nothing was learnt about the upstream: a stage denied the call, the client cancelled it,
    the client kept it waiting (unanswered server->client request), or the session ended."""


@dataclass(slots=True)
class Ticket:
    """One admitted upstream call; released exactly once with its :class:`Outcome`."""

    principal: str
    probe: bool
    released: bool = False


class CircuitBreaker:
    """Per-upstream breaker that no single principal can open for everyone.

    * **Closed**: every call is admitted. Each failure is counted against the principal whose
      call (or session) failed; any success resets every count. The breaker opens once the
      counted failures reach ``threshold`` *and* come from at least two principals: each
      principal's count is capped at ``threshold - 1``, so one caller (say, one that keeps
      asking for a call that hangs, or never answers an elicitation) can never open it alone.
    * **Open**: calls fail fast with -31013 and new connections get HTTP 503, for
      ``reset_after`` seconds.
    * **Half-open**: every principal may have one *probe* in flight, a real upstream call
      (never a handshake, never a long-lived ``subscriptions/listen``). The first probe that
      gets an answer closes the breaker; failed probes count as above, so the breaker re-opens
      only when at least two principals fail again. A probe is released on every outcome
      (answer, error, timeout, cancel, stage denial, session end): a principal that holds its
      probe blocks only itself.

    With one active principal the breaker therefore never opens: that caller's calls keep
    failing on their own (-31004/-31005), bounded by the rate limit. No I/O; the clock is injected.
    """

    def __init__(self, threshold: int, reset_after: float, clock: Clock = time.monotonic,
                 on_change: Callable[[BreakerState], None] | None = None, max_principals: int = 10_000) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._on_change = on_change
        self._max = max_principals
        self.state = BreakerState.CLOSED
        self._failures: OrderedDict[str, int] = OrderedDict()
        self._probes: set[str] = set()
        self._opened_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    @property
    def failures(self) -> int:
        """Failures counted towards opening (each principal capped at ``threshold - 1``)."""
        cap = max(self.threshold - 1, 1)
        return sum(min(count, cap) for count in self._failures.values())

    def _set(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            if self._on_change is not None:
                self._on_change(state)

    def _refresh(self) -> None:
        """Open -> half-open once ``reset_after`` has passed (counts start afresh)."""
        if self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_after:
            self._failures.clear()
            self._probes.clear()
            self._set(BreakerState.HALF_OPEN)

    def accepts_connections(self) -> bool:
        """May a new session connect? Only an open breaker refuses; this never takes a probe."""
        if not self.enabled:
            return True
        self._refresh()
        return self.state is not BreakerState.OPEN

    def admit(self, principal: str, *, probe_ok: bool = True) -> Ticket | None:
        """A ticket for one upstream call by ``principal``, or ``None`` when the breaker refuses.

        ``probe_ok=False`` for calls that cannot prove the upstream healthy (long-lived
        streams such as ``subscriptions/listen``): they are refused while half-open.
        """
        if not self.enabled:
            return Ticket(principal, probe=False)
        self._refresh()
        if self.state is BreakerState.CLOSED:
            return Ticket(principal, probe=False)
        if self.state is BreakerState.OPEN or not probe_ok or principal in self._probes:
            return None
        self._probes.add(principal)
        return Ticket(principal, probe=True)

    def release(self, ticket: Ticket, outcome: Outcome) -> None:
        """End an admitted call; a second release of the same ticket is ignored."""
        if ticket.released:
            return
        ticket.released = True
        if ticket.probe:
            self._probes.discard(ticket.principal)
        if outcome is Outcome.SUCCESS:
            self.success()
        elif outcome is Outcome.FAILURE:
            self.failure(ticket.principal)

    def success(self) -> None:
        """The upstream answered: every count resets and the breaker closes."""
        if not self.enabled:
            return
        self._failures.clear()
        self._probes.clear()
        self._set(BreakerState.CLOSED)

    def adopt(self, state: BreakerState, opened_ago: float = 0.0) -> None:
        """Take a state decided elsewhere (the fleet's shared breaker, :mod:`guard.cluster.breaker`).

        Open: refuses as if it had opened ``opened_ago`` seconds ago (so it half-opens when the
        shared one does). Half-open and closed start their counts afresh.
        """
        if state is BreakerState.OPEN:
            self._opened_at = self._clock() - max(opened_ago, 0.0)
        if state is not self.state:
            self._failures.clear()
            self._probes.clear()
        self._set(state)
        self._refresh()

    def failure(self, principal: str) -> None:
        """Count one upstream failure against ``principal`` (a failed call, connect or session)."""
        if not self.enabled or self.state is BreakerState.OPEN:
            return
        self._failures[principal] = self._failures.get(principal, 0) + 1
        self._failures.move_to_end(principal)
        if len(self._failures) > self._max:
            self._failures.popitem(last=False)
        if len(self._failures) >= 2 and self.failures >= self.threshold:
            self._opened_at = self._clock()
            self._probes.clear()
            self._set(BreakerState.OPEN)

"""A circuit breaker per upstream whose state the whole fleet shares.

Each replica keeps a :class:`~guard.limits.CircuitBreaker` that answers every question
without waiting (``accepts_connections``, ``admit``, ``release`` stay synchronous and the
relay never waits on Redis for them). It mirrors the shared breaker in Redis:

* every failure it counts is also reported to Redis
  (:data:`~guard.cluster.scripts.BREAKER_FAILURE`), which applies the same rule as the local
  breaker to the fleet's counts: each principal capped at ``threshold - 1``, opening needs
  two principals, so one principal cannot open the breaker for everyone, on one replica
  or across several;
* a success anywhere closes it (reported only while the shared breaker has counts or is not
  closed, so healthy traffic costs no Redis writes);
* every ``sync_interval`` the replica reads the shared state and adopts it: a breaker opened
  by one replica's failures refuses on every replica within one interval, and half-opens
  when the shared one does (each replica then lets one probe per principal through).

While Redis is away each replica's breaker works alone, exactly as without ``[cluster]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from guard.cluster.store import SharedStore, digest
from guard.limits import BreakerState, CircuitBreaker

_STATES = {state.value: state for state in BreakerState}


class FleetBreaker(CircuitBreaker):
    """:class:`CircuitBreaker` mirrored to and from the fleet's Redis."""

    def __init__(self, upstream: str, store: SharedStore, threshold: int, reset_after: float,
                 on_change: Callable[[BreakerState], None] | None = None) -> None:
        super().__init__(threshold, reset_after, on_change=on_change)
        self.store = store
        self._keys = [store.key("breaker", upstream), store.key("breaker", upstream, "failures")]
        self._dirty = False
        """The shared breaker may have counts or be open: a success must be reported."""
        if self.enabled:
            store.every_tick(self.sync)

    @property
    def _ttl_ms(self) -> int:
        return max(math.ceil(self.reset_after * 4000), 600_000)

    def failure(self, principal: str) -> None:
        was_open = self.state is BreakerState.OPEN
        super().failure(principal)
        if not self.enabled or was_open:
            return
        self._dirty = True
        script = self.store.script("BREAKER_FAILURE")
        args: list[Any] = [self.threshold, self.reset_after, digest(principal), self._ttl_ms]

        async def report(client: Any) -> None:
            self._apply(await script(keys=self._keys, args=args, client=client))

        self.store.spawn("breaker", report)

    def success(self) -> None:
        super().success()
        if not self.enabled or not self._dirty:
            return
        self._dirty = False
        script = self.store.script("BREAKER_SUCCESS")

        async def report(client: Any) -> None:
            await script(keys=self._keys, args=[], client=client)

        self.store.spawn("breaker", report)

    async def sync(self) -> None:
        """Read the shared state and adopt it (raises :class:`SharedStateUnavailable` when Redis is away)."""
        script = self.store.script("BREAKER_STATE")
        reply = await self.store.run("breaker", lambda r: script(
            keys=self._keys, args=[self.threshold, self.reset_after], client=r))
        self._apply(reply)

    def _apply(self, reply: Any) -> None:
        state = _STATES.get(str(reply[0]), BreakerState.CLOSED)
        opened_ago = int(reply[1]) / 1000.0
        counted = int(reply[2])
        self._dirty = state is not BreakerState.CLOSED or counted > 0
        if state is BreakerState.OPEN:
            if self.state is not BreakerState.OPEN:
                self.adopt(BreakerState.OPEN, opened_ago)
        elif state is not self.state:
            if state is BreakerState.HALF_OPEN and self.state is BreakerState.CLOSED:
                return  # opened and half-opened between two syncs: nothing to refuse any more
            self.adopt(state)

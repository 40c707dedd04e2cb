"""Per-principal rate limits and connection caps held in Redis, with a bounded local fallback.

* Rate: one token bucket per principal in Redis, spent atomically by a Lua script
  (:data:`~guard.cluster.scripts.TOKEN_BUCKET`), so the sum of requests admitted by every
  replica stays within ``rate_burst + rate_limit * t``.
* Connections: per principal, one Redis hash of *replica -> connections it holds*. A new
  connection is admitted only if the live replicas' counts plus this replica's new count
  stay within ``max_connections_per_principal``; the count of a replica whose lease expired
  (it died) stops counting after ``lease_ttl``. Every write is this replica's absolute
  count, so a lost reply or a Redis restart is healed by the next write or heartbeat.
  ``max_connections`` stays a per-replica cap: it protects the process, not a principal.
* Redis unreachable: ``fallback = "local"`` enforces limit / N in-process (N = live
  replicas at the last heartbeat, at least 1; the burst and the cap likewise, at least 1),
  so the fleet as a whole stays near the limit; ``fallback = "closed"`` refuses (requests
  -31006, connections ``shared_state_unavailable``: HTTP 503).
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict

from guard.cluster.store import SharedStore, digest
from guard.errors import SharedStateUnavailable
from guard.limits import ConnectionLimiter, RateLimiter


class FleetRateLimiter:
    """:class:`~guard.limits.RateLimit` shared by the fleet."""

    def __init__(self, store: SharedStore, rate: float, burst: int) -> None:
        self.store = store
        self.rate = rate
        self.burst = max(burst, 1)
        self._local: RateLimiter | None = None
        self._local_share = 0

    async def take(self, principal_key: str) -> bool:
        store = self.store
        script = store.script("TOKEN_BUCKET")
        key = store.key("rate", digest(principal_key))
        try:
            allowed = await store.run("rate", lambda r: script(keys=[key], args=[self.rate, self.burst], client=r))
        except SharedStateUnavailable:
            return self._fallback(principal_key)
        return bool(int(allowed))

    def _fallback(self, principal_key: str) -> bool:
        store = self.store
        if store.settings.fallback == "closed":
            store.metrics.fell_back("rate", False)
            return False
        share = store.share()
        if self._local is None or share != self._local_share:
            self._local = RateLimiter(self.rate / share, max(1, self.burst // share))
            self._local_share = share
        allowed = self._local.allow(principal_key)
        store.metrics.fell_back("rate", allowed)
        return allowed


class FleetConnections:
    """:class:`~guard.limits.ConnectionCap` whose per-principal cap holds across the fleet."""

    def __init__(self, store: SharedStore, max_total: int, max_per_principal: int) -> None:
        self.store = store
        self.cap = max_per_principal
        self.replica = ConnectionLimiter(max_total, max_per_principal)
        """What this replica holds (every connection, shared or admitted by the fallback)."""
        self._shared: dict[str, int] = defaultdict(int)
        """Connections per principal recorded in Redis by this replica."""
        self._locks: dict[str, asyncio.Lock] = {}
        store.on_reconnect(self.reassert)

    @property
    def _ttl_ms(self) -> int:
        return math.ceil(self.store.settings.lease_ttl * 3000)

    def _lock(self, principal_key: str) -> asyncio.Lock:
        lock = self._locks.get(principal_key)
        if lock is None:
            lock = self._locks[principal_key] = asyncio.Lock()
        return lock

    async def enter(self, principal_key: str) -> str | None:
        refused = self.replica.acquire(principal_key)
        if refused is not None:
            return refused
        try:
            async with self._lock(principal_key):  # one write at a time per principal: counts stay exact
                admitted = await self._enter_shared(principal_key)
        except BaseException:
            self.replica.release(principal_key)
            raise
        finally:
            self._forget_lock(principal_key)
        if admitted is None:
            if self.store.settings.fallback == "closed":
                self.store.metrics.fell_back("connections", False)
                self.replica.release(principal_key)
                return "shared_state_unavailable"
            admitted = self._fallback(principal_key)
        if not admitted:
            self.replica.release(principal_key)
            return "too_many_connections_for_principal"
        return None

    async def _enter_shared(self, principal_key: str) -> bool | None:
        """``True``/``False`` as Redis decided; ``None`` when Redis could not decide."""
        store = self.store
        script = store.script("CONNECTIONS")
        key = store.key("conn", digest(principal_key))
        count = self._shared[principal_key] + 1
        try:
            ok = await store.run("connections", lambda r: script(
                keys=[key, store.replicas_key], args=[store.replica_id, count, self.cap, self._ttl_ms], client=r))
        except SharedStateUnavailable:
            if self._shared[principal_key] == 0:
                del self._shared[principal_key]
            return None
        if int(ok):
            self._shared[principal_key] = count
            return True
        if self._shared[principal_key] == 0:
            del self._shared[principal_key]
        return False

    def _fallback(self, principal_key: str) -> bool:
        store = self.store
        # replica.held() already counts the connection being admitted
        allowed = self.replica.held(principal_key) <= max(1, self.cap // store.share())
        store.metrics.fell_back("connections", allowed)
        return allowed

    def release(self, principal_key: str) -> None:
        held_before = self.replica.held(principal_key)
        self.replica.release(principal_key)
        shared = self._shared.get(principal_key, 0)
        if shared == 0 or held_before > shared:
            return  # the connection was admitted by the fallback: Redis never counted it
        if shared == 1:
            del self._shared[principal_key]
        else:
            self._shared[principal_key] = shared - 1
        self.store.spawn("release", lambda r: self._write(principal_key))

    async def _write(self, principal_key: str) -> None:
        """Write this replica's current count for one principal (absolute: idempotent)."""
        store = self.store
        script = store.script("SET_COUNT")
        async with self._lock(principal_key):
            try:
                await script(keys=[store.key("conn", digest(principal_key))],
                             args=[store.replica_id, self._shared.get(principal_key, 0), self._ttl_ms])
            finally:
                self._forget_lock(principal_key)

    def _forget_lock(self, principal_key: str) -> None:
        """Drop the lock of a principal with nothing here (the map stays as small as the connections)."""
        lock = self._locks.get(principal_key)
        if (lock is not None and not lock.locked() and self.replica.held(principal_key) == 0
                and principal_key not in self._shared):
            del self._locks[principal_key]

    async def reassert(self) -> None:
        """After a heartbeat: write every count this replica holds (heals a Redis restart; connections
        the fallback admitted while Redis was away count from now on)."""
        held = self.replica.holders()
        for principal_key in set(held) | set(self._shared):
            count = held.get(principal_key, 0)
            if count:
                self._shared[principal_key] = count
            else:
                self._shared.pop(principal_key, None)

            async def write(_client: object, key: str = principal_key) -> None:
                await self._write(key)

            await self.store.run("connections", write)

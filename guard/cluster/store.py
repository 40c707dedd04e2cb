"""The one place that talks to Redis: a deadline on every call, a health state, background upkeep.

Rules (docs/operators.md, "Fleet: when Redis fails"):

* No request ever waits on Redis longer than ``deadline_ms``; a call that misses it is
  answered by the fallback. A call that fails (connection refused or reset, an error
  reply), or :data:`LATE_BEFORE_DOWN` calls in a row that miss the deadline, mark the
  store **down**; while down, callers get
  :class:`~guard.errors.SharedStateUnavailable` at once (no per-request wait) and apply
  their fallback, and a background loop pings Redis every ``sync_interval``.
* "Up" means "answers within ``deadline_ms``": a slow Redis is treated like a missing one.
* Once a ping succeeds the store is up again and the replica re-asserts what it holds
  (its lease, its connection counts), so a Redis restart or failover that lost the data
  heals within one heartbeat.

Only this module imports ``redis`` (lazily, from :func:`guard.cluster.fleet.build_fleet`):
a guard without ``[cluster]`` never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.retry import Retry

from guard.cluster import scripts
from guard.cluster.metrics import ClusterMetrics
from guard.cluster.settings import ClusterSettings
from guard.errors import SharedStateUnavailable

log = logging.getLogger("guard.cluster")

T = TypeVar("T")
Upkeep = Callable[[], Awaitable[None]]
LATE_BEFORE_DOWN = 3
"""Calls in a row that miss the deadline before Redis counts as down (a failed call counts at once)."""


def digest(value: str) -> str:
    """A fixed-size stand-in for a principal or session id in Redis keys (never the value itself)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


async def bounded(call: Awaitable[T], seconds: float) -> T:
    """``call``'s result, or :class:`TimeoutError` once ``seconds`` have passed, *without* waiting
    for the abandoned call to wind down.

    ``asyncio.wait_for`` waits for the cancelled call to finish cancelling; a client library that
    awaits a hung socket while handling the cancellation would hold the request past its deadline.
    Here the call is cancelled and left to finish on its own.
    """
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(_consume)
    raise TimeoutError


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning


class SharedStore:
    """A Redis client with a deadline, a health flag and the replica's lease."""

    def __init__(self, settings: ClusterSettings, replica_id: str, metrics: ClusterMetrics) -> None:
        self.settings = settings
        self.replica_id = replica_id
        self.metrics = metrics
        self.prefix = "{" + settings.key_prefix + "}"
        self.up = False
        self.detail = "not connected yet"
        self.live_replicas = 0
        """Replicas with a live lease at the last heartbeat (0 until Redis has answered once)."""
        timeout = max(settings.deadline, 0.001)
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
            decode_responses=True)
        self._scripts: dict[str, AsyncScript] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._periodic: list[Upkeep] = []
        self._on_reconnect: list[Upkeep] = []
        self._next_heartbeat = 0.0
        self._late = 0
        """Calls in a row that missed the deadline."""
        metrics.redis_state(False)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def replicas_key(self) -> str:
        return self.key("replicas")

    def share(self) -> int:
        """How many replicas share a limit while Redis is away: the last live count, else ``replicas``."""
        return max(self.live_replicas or self.settings.replicas, 1)

    def script(self, name: str) -> AsyncScript:
        """A registered script (``EVALSHA``, reloaded by redis-py after a Redis restart)."""
        found = self._scripts.get(name)
        if found is None:
            found = self.client.register_script(getattr(scripts, name))
            self._scripts[name] = found
        return found

    async def run(self, op: str, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run one Redis call within the deadline; raises :class:`SharedStateUnavailable` otherwise."""
        if not self.up:
            raise SharedStateUnavailable(self.detail)
        try:
            result = await bounded(call(self.client), self.settings.deadline)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            why = f"no answer within {self.settings.deadline_ms} ms"
            self._late += 1
            if self._late < LATE_BEFORE_DOWN:  # one slow answer: this call falls back, Redis stays up
                self.metrics.redis_error(op)
                raise SharedStateUnavailable(why) from None
            self._down(op, why)
        except Exception as exc:  # any Redis, connection or script error: the fallback decides
            self._down(op, type(exc).__name__)
        else:
            self._late = 0
            return result
        raise SharedStateUnavailable(self.detail)

    def spawn(self, op: str, call: Callable[[aioredis.Redis], Awaitable[Any]]) -> None:
        """Run a write in the background (a release, a breaker report): callers never wait on it."""
        if not self.up:
            return

        async def go() -> None:
            with contextlib.suppress(SharedStateUnavailable):
                await self.run(op, call)

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def every_tick(self, upkeep: Upkeep) -> None:
        """Run ``upkeep`` every ``sync_interval`` while Redis is up (breaker sync)."""
        self._periodic.append(upkeep)

    def on_reconnect(self, upkeep: Upkeep) -> None:
        """Run ``upkeep`` after every heartbeat (re-assert counts a Redis restart lost)."""
        self._on_reconnect.append(upkeep)

    def _down(self, op: str, why: str) -> None:
        self.metrics.redis_error(op)
        if self.up:
            log.warning("cluster: Redis unreachable (%s during %s): fallback %r until it answers again",
                        why, op, self.settings.fallback)
        self.up = False
        self.detail = f"unreachable: {why}"
        self.metrics.redis_state(False)

    async def _ping(self) -> None:
        try:
            await bounded(self.client.ping(), self.settings.deadline)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.detail = f"unreachable: {type(exc).__name__}" if not isinstance(exc, TimeoutError) else (
                f"unreachable: no answer within {self.settings.deadline_ms} ms")
            return
        log.info("cluster: Redis reachable; replica %s shares limits, breakers and sessions", self.replica_id)
        self.up = True
        self._late = 0
        self.detail = "connected"
        self.metrics.redis_state(True)
        self._next_heartbeat = 0.0

    async def heartbeat(self) -> None:
        """Renew this replica's lease and learn how many replicas are live."""
        script = self.script("HEARTBEAT")
        live = await self.run("heartbeat", lambda r: script(keys=[self.replicas_key],
                                                            args=[self.replica_id, self.settings.lease_ttl],
                                                            client=r))
        self.live_replicas = int(live)
        self.metrics.live_replicas.set(self.live_replicas)

    async def tick(self) -> None:
        """One round of upkeep: ping while down; heartbeat (every ``lease_ttl / 3``) and sync while up."""
        if not self.up:
            await self._ping()
            if not self.up:
                return
        now = time.monotonic()
        try:
            if now >= self._next_heartbeat:
                await self.heartbeat()
                self._next_heartbeat = now + self.settings.lease_ttl / 3
                for upkeep in self._on_reconnect:
                    await upkeep()
            for upkeep in self._periodic:
                await upkeep()
        except SharedStateUnavailable:
            return

    async def start(self) -> None:
        """Connect (a Redis that is down at start is not an error: the fallback serves) and start upkeep."""
        await self.tick()
        if not self.up:
            log.warning("cluster: Redis not reachable at start (%s): fallback %r until it answers",
                        self.detail, self.settings.fallback)

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.settings.sync_interval)
                try:
                    await self.tick()
                except Exception:  # upkeep must survive anything; the next tick tries again
                    log.exception("cluster: upkeep failed")

        self._loop = asyncio.get_running_loop().create_task(loop(), name="guard-cluster-upkeep")

    async def aclose(self) -> None:
        """Stop upkeep, give up this replica's lease (its counts stop counting at once), disconnect."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
        if self.up:
            with contextlib.suppress(SharedStateUnavailable):
                await self.run("leave", lambda r: r.hdel(self.replicas_key, self.replica_id))
        with contextlib.suppress(Exception):
            await bounded(self.client.aclose(), 1.0)

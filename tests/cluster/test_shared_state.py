"""[cluster] against a real redis-server: two replicas' shared state in one process (issue 17).

Each "replica" is a :class:`guard.cluster.fleet.Fleet` built from Settings with its own
replica id, talking to the same redis-server over loopback. Faults are real: Redis
killed (SIGKILL), restarted on the same port, paused (SIGSTOP: a Redis that answers nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from guard.cluster.fleet import Fleet, build_fleet
from guard.cluster.store import LATE_BEFORE_DOWN, digest
from guard.config import parse
from guard.errors import ConfigError
from guard.limits import BreakerState
from guard.metrics import Metrics
from tests.support.fleet import RedisServer, redis_server
from tests.support.guard_server import free_port

WAIT = 20.0
"""Generous bound for anything that must happen "soon" on a loaded machine (never a timing claim)."""


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that kill or pause it."""
    with redis_server(tmp_path) as server:
        yield server


def settings(url: str, prefix: str, replica: str, **cluster: Any) -> Any:
    server = {"rate_limit": 0.001, "rate_burst": 10, "max_connections_per_principal": 3}
    server.update(cluster.pop("server", {}))
    return parse({
        "server": server,
        "upstreams": {"s": {"url": "ws://127.0.0.1:9/mcp", "breaker_failures": 3, "breaker_reset": 60}},
        "auth": {"anonymous_servers": ["s"]},
        # a deadline no loaded CI machine misses, unless a test sets its own: past it the fallback decides
        "cluster": {"redis_url": url, "key_prefix": prefix, "replica_id": replica, "sync_interval": 0.1,
                    "deadline_ms": 5000, **cluster},
    })


async def replica(url: str, prefix: str, name: str, **cluster: Any) -> tuple[Fleet, Metrics]:
    metrics = Metrics()
    fleet = build_fleet(settings(url, prefix, name, **cluster), metrics, on_breaker_change=metrics.breaker_state)
    await fleet.start()
    return fleet, metrics


@pytest.fixture
async def pair(redis: RedisServer) -> AsyncIterator[tuple[Fleet, Fleet]]:
    prefix = uuid.uuid4().hex[:12]
    a, _ = await replica(redis.url, prefix, "a")
    b, _ = await replica(redis.url, prefix, "b")
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def eventually(check: Any, timeout: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return float(metrics.registry.get_sample_value(name, labels) or 0.0)


async def test_a_principal_gets_its_rate_limit_once_across_two_replicas(pair: tuple[Fleet, Fleet]) -> None:
    a, b = pair
    assert a.rate_limiter is not None and b.rate_limiter is not None
    results = await asyncio.gather(*(limiter.take("iss|alice") for _ in range(15)
                                     for limiter in (a.rate_limiter, b.rate_limiter)))
    assert sum(results) == 10  # the burst, not 2 x the burst
    assert await a.rate_limiter.take("iss|bob")  # another principal has its own bucket


async def test_the_connection_cap_holds_across_replicas_and_frees_on_release(pair: tuple[Fleet, Fleet]) -> None:
    a, b = pair
    outcomes = await asyncio.gather(*(fleet.connections.enter("iss|alice") for fleet in (a, b, a, b, a, b)))
    assert outcomes.count(None) == 3
    assert set(outcomes) == {None, "too_many_connections_for_principal"}
    holder = a if a.connections.replica.held("iss|alice") else b
    holder.connections.release("iss|alice")
    await eventually(lambda: not holder.store._tasks)  # the release reached Redis
    assert await b.connections.enter("iss|alice") is None
    assert await a.connections.enter("iss|alice") == "too_many_connections_for_principal"


async def test_a_dead_replicas_connections_stop_counting_when_its_lease_expires(redis: RedisServer) -> None:
    prefix = uuid.uuid4().hex[:12]
    a, _ = await replica(redis.url, prefix, "a", lease_ttl=1.0)
    b, _ = await replica(redis.url, prefix, "b", lease_ttl=1.0)
    try:
        for _ in range(3):
            assert await a.connections.enter("iss|alice") is None
        assert await b.connections.enter("iss|alice") == "too_many_connections_for_principal"
        assert a.store._loop is not None
        a.store._loop.cancel()  # replica a dies: no more heartbeats, nothing released
        await eventually(lambda: b.store.live_replicas == 1)
        assert await b.connections.enter("iss|alice") is None
    finally:
        await b.aclose()
        await a.store.client.aclose()


async def test_one_principal_cannot_open_the_shared_breaker_from_several_replicas(
        pair: tuple[Fleet, Fleet]) -> None:
    a, b = pair
    for _ in range(20):
        a.breakers["s"].failure("iss|mallory")
        b.breakers["s"].failure("iss|mallory")
    await eventually(lambda: not a.store._tasks and not b.store._tasks)
    await a.breakers["s"].sync()
    assert a.breakers["s"].state is BreakerState.CLOSED and b.breakers["s"].state is BreakerState.CLOSED
    a.breakers["s"].failure("iss|alice")  # a second principal: mallory's 2 + alice's 1 reach 3
    await eventually(lambda: a.breakers["s"].state is BreakerState.OPEN)
    await eventually(lambda: b.breakers["s"].state is BreakerState.OPEN)  # seen by the other replica
    assert not b.breakers["s"].accepts_connections() and b.breakers["s"].admit("iss|carol") is None


async def test_a_success_on_one_replica_closes_the_breaker_on_the_other(pair: tuple[Fleet, Fleet]) -> None:
    a, b = pair
    a.breakers["s"].failure("iss|alice")
    b.breakers["s"].failure("iss|bob")
    b.breakers["s"].failure("iss|bob")
    await eventually(lambda: b.breakers["s"].state is BreakerState.OPEN)
    await eventually(lambda: a.breakers["s"].state is BreakerState.OPEN)
    a.breakers["s"].adopt(BreakerState.HALF_OPEN)  # as after breaker_reset, on this replica
    ticket = a.breakers["s"].admit("iss|alice")
    assert ticket is not None and ticket.probe
    a.breakers["s"].success()
    await eventually(lambda: b.breakers["s"].state is BreakerState.CLOSED)


async def test_redis_down_at_start_enforces_the_local_share_and_stays_ready() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    fleet, metrics = await replica(url, "p", "a", replicas=2)
    try:
        assert fleet.rate_limiter is not None
        allowed = [await fleet.rate_limiter.take("iss|alice") for _ in range(12)]
        assert sum(allowed) == 5  # burst 10 shared by 2 replicas
        assert [await fleet.connections.enter("iss|alice") for _ in range(2)] == [
            None, "too_many_connections_for_principal"]  # cap 3 // 2 replicas = 1
        name, ok, detail = fleet.readiness()
        assert name == "redis" and ok and detail.startswith("degraded")
        assert sample(metrics, "guard_cluster_redis_up") == 0
        assert sample(metrics, "guard_cluster_fallback_total", limit="rate", outcome="refuse") == 7
    finally:
        await fleet.aclose()


async def test_redis_down_with_fallback_closed_refuses_and_is_not_ready() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    fleet, _ = await replica(url, "p", "a", fallback="closed")
    try:
        assert fleet.rate_limiter is not None
        assert not await fleet.rate_limiter.take("iss|alice")
        assert await fleet.connections.enter("iss|alice") == "shared_state_unavailable"
        assert fleet.connections.replica.held("iss|alice") == 0  # the refused slot was given back
        assert not fleet.readiness()[1]
    finally:
        await fleet.aclose()


async def test_a_hung_redis_never_holds_a_request_past_the_deadline(own_redis: RedisServer) -> None:
    fleet, metrics = await replica(own_redis.url, "p", "a", deadline_ms=100)
    try:
        assert fleet.rate_limiter is not None
        assert await fleet.rate_limiter.take("iss|alice")
        own_redis.pause()
        for _ in range(LATE_BEFORE_DOWN):  # each answered by the local fallback, not left waiting on Redis
            assert await asyncio.wait_for(fleet.rate_limiter.take("iss|alice"), WAIT)
        assert not fleet.store.up  # three late answers in a row: Redis counts as down
        assert sum(sample(metrics, "guard_cluster_redis_errors_total", op=op) for op in ("rate", "heartbeat",
                                                                                         "breaker")) >= 3
        assert await asyncio.wait_for(fleet.connections.enter("iss|alice"), WAIT) is None
        own_redis.resume()
        await eventually(lambda: fleet.store.up)
        assert sample(metrics, "guard_cluster_redis_up") == 1
    finally:
        own_redis.resume()
        await fleet.aclose()


async def test_a_redis_restart_is_healed_by_the_next_heartbeat(own_redis: RedisServer) -> None:
    a, _ = await replica(own_redis.url, "p", "a", lease_ttl=0.6)
    b, _ = await replica(own_redis.url, "p", "b", lease_ttl=0.6)
    try:
        assert await a.connections.enter("iss|alice") is None
        assert await a.connections.enter("iss|alice") is None
        own_redis.kill()
        own_redis.start()  # same port, empty: the counts are gone
        key = a.store.key("conn", digest("iss|alice"))
        for _ in range(int(WAIT / 0.05)):  # a notices, reconnects and re-asserts what it holds
            with contextlib.suppress(Exception):
                if await a.store.client.hget(key, a.store.replica_id) == "2" and b.store.up:
                    break
            await asyncio.sleep(0.05)
        assert await a.store.client.hget(key, a.store.replica_id) == "2"
        outcomes = [await b.connections.enter("iss|alice") for _ in range(3)]
        assert outcomes.count(None) == 1  # cap 3, a still holds 2
    finally:
        await a.aclose()
        await b.aclose()


async def test_an_http_session_held_by_another_replica_is_explained_not_served(
        pair: tuple[Fleet, Fleet]) -> None:
    a, b = pair
    a.directory.claim("session-of-a")
    await eventually(lambda: not a.store._tasks)
    metrics_b = b.store.metrics
    b.directory.unknown("session-of-a")
    b.directory.unknown("never-issued")
    await eventually(lambda: not b.store._tasks)
    assert metrics_b.unknown_sessions.labels(outcome="owned_elsewhere")._value.get() == 1
    assert metrics_b.unknown_sessions.labels(outcome="unknown")._value.get() == 1
    a.directory.drop("session-of-a")
    await eventually(lambda: not a.store._tasks)
    b.directory.unknown("session-of-a")
    await eventually(lambda: not b.store._tasks)
    assert metrics_b.unknown_sessions.labels(outcome="unknown")._value.get() == 2


def test_cluster_settings_are_validated_all_at_once() -> None:
    base: dict[str, Any] = {"upstreams": {"s": {"url": "ws://127.0.0.1:9/mcp"}},
                            "auth": {"anonymous_servers": ["s"]}}
    with pytest.raises(ConfigError) as caught:
        parse({**base, "cluster": {"redis_url": "http://x", "deadline_ms": 0, "fallback": "open",
                                   "key_prefix": "bad prefix", "extra": 1}})
    problems = "\n".join(caught.value.problems)
    for field in ("redis_url", "deadline_ms", "fallback", "key_prefix", "cluster.extra"):
        assert field in problems
    with pytest.raises(ConfigError, match="redis_url"):
        parse({**base, "cluster": {}})
    assert not parse(base).cluster.enabled


def test_without_cluster_guard_never_imports_redis() -> None:
    code = ("import sys\nfrom guard.config import parse\nfrom guard.runtime import build_runtime\n"
            "build_runtime(parse({'upstreams': {'s': {'url': 'ws://127.0.0.1:9/mcp'}},"
            " 'auth': {'anonymous_servers': ['s']}}))\n"
            "assert not any(m == 'redis' or m.startswith('redis.') for m in sys.modules), 'redis imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])

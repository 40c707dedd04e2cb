"""A fleet on loopback (issue 17): three ``guard serve`` replicas, each with its own audit file,
behind a real HAProxy, sharing one real redis-server, in front of one WebSocket MCP upstream.

One module-scoped fleet serves every test, in file order; the later tests kill a replica and
Redis. Figures (calls, limits, failover timings) are printed (``pytest -s``) and gathered in
``bench/fleet.py``'s output format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from guard import devkeys
from guard.audit.fleet import verify_fleet
from guard.crypto.signing import load_verify_key
from tests.support import tokens
from tests.support.fleet import RedisServer, haproxy, redis_server, stop
from tests.support.guard_server import free_port

pytestmark = pytest.mark.slow

WAIT = 30.0
"""Generous bound for anything that must happen "soon" on a loaded 2-core machine."""
RATE, BURST, CAP = 1.0, 12, 4
UPSTREAM = Path(__file__).resolve().parent.parent / "support" / "ws_upstream.py"
FIGURES: dict[str, Any] = {}


def figure(name: str, value: Any) -> None:
    FIGURES[name] = value
    print(f"FLEET {name} = {json.dumps(value)}")


@dataclass
class Replica:
    name: str
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "guard.cli", "serve", "--config", str(self.config), "--port", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=err)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Fleet:
    redis: RedisServer
    replicas: list[Replica]
    lb: int = 0
    upstream: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=Path)

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.lb}/mcp"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.lb}/mcp"

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive()]


def config_text(index: int, redis_url: str, upstream_port: int, key: Path) -> str:
    return f"""
[server]
host = "127.0.0.1"
rate_limit = {RATE}
rate_burst = {BURST}
max_connections_per_principal = {CAP}
drain_timeout = 2

[upstreams.s]
url = "ws://127.0.0.1:{upstream_port}/"
call_timeout = 20

[upstreams.flaky]
url = "ws://127.0.0.1:{free_port()}/"
connect_timeout = 2
breaker_failures = 2
breaker_reset = 300
reconnect_attempts = 0

[auth]
audience = "{tokens.AUDIENCE}"
[[auth.issuers]]
issuer = "{tokens.ISSUER}"
algorithms = ["HS256"]
hmac_secret = "{tokens.SECRET}"

[audit]
path = "audit/guard.jsonl"
signing_key = {json.dumps(str(key))}
checkpoint_interval = 0.5

[cluster]
redis_url = "{redis_url}"
replica_id = "r{index}"
deadline_ms = 3000
sync_interval = 0.2
lease_ttl = 3
replicas = 3
"""


def wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + WAIT * 2
    while time.monotonic() < deadline:
        assert replica.alive(), replica.log.read_text()[-3000:]
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{replica.http}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"replica {replica.name} not ready: {replica.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    devkeys.generate_audit_key(root / "keys")
    key = root / "keys" / devkeys.AUDIT_PRIVATE_KEY
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(UPSTREAM), str(upstream_port)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)  # it logs every connection guard drops
    assert upstream.stdout is not None and upstream.stdout.readline().strip() == b"ready"
    started = time.monotonic()
    with redis_server(root) as redis:
        replicas = []
        for index in range(3):
            home = root / f"r{index}"
            home.mkdir()
            config = home / "guard.toml"
            config.write_text(config_text(index, redis.url, upstream_port, key))
            replicas.append(Replica(f"r{index}", free_port(), config, home / "stderr.log"))
        fleet = Fleet(redis, replicas, upstream=upstream, workdir=root)
        try:
            for replica in replicas:
                replica.start()
            for replica in replicas:
                wait_ready(replica)
            with haproxy([r.port for r in replicas], root) as lb:
                fleet.lb = lb
                wait_balanced(fleet)
                figure("fleet_start_seconds", round(time.monotonic() - started, 1))
                yield fleet
        finally:
            for replica in replicas:
                if replica.proc is not None:
                    stop(replica.proc)
            stop(upstream)
            upstream.stdout.close()


def wait_balanced(fleet: Fleet) -> None:
    """Until HAProxy's health checks have every replica up (each answers a request through it)."""
    seen: set[str] = set()
    deadline = time.monotonic() + WAIT
    while len(seen) < len(fleet.live()) and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            seen.add(httpx.get(f"http://127.0.0.1:{fleet.lb}/readyz", timeout=2,
                               headers={"Connection": "close"}).json()["checks"]["redis"]["detail"].split()[2])
        time.sleep(0.05)
    assert len(seen) == len(fleet.live()), seen


def scrape(replica: Replica) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{replica.http}/metrics", timeout=5).text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(replica: Replica, name: str, **labels: str) -> float:
    return scrape(replica).get((name, frozenset(labels.items())), 0.0)


async def open_ws(url: str, subject: str) -> ClientConnection:
    return await connect(url, subprotocols=["mcp"], additional_headers=tokens.bearer(subject), open_timeout=WAIT)


async def call(ws: ClientConnection, rid: int) -> dict[str, Any]:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                              "params": {"name": "echo", "arguments": {"n": rid}}}))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert reply["id"] == rid
    return reply


async def burst(ws: ClientConnection, first: int, count: int) -> list[dict[str, Any]]:
    """Send ``count`` calls at once on one connection, then read their answers."""
    for rid in range(first, first + count):
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                                  "params": {"name": "echo", "arguments": {}}}))
    replies = [json.loads(await asyncio.wait_for(ws.recv(), WAIT)) for _ in range(count)]
    assert sorted(r["id"] for r in replies) == list(range(first, first + count))
    return replies


async def test_a_principals_rate_limit_holds_across_replicas(fleet: Fleet) -> None:
    before = [metric(r, "guard_connections_total", server="s") for r in fleet.replicas]
    conns = [await open_ws(f"{fleet.ws}/s", "alice") for _ in range(3)]  # roundrobin: one per replica
    started = time.monotonic()
    try:
        batches = await asyncio.gather(*(burst(ws, i * 100, 12) for i, ws in enumerate(conns)))
        replies = [reply for batch in batches for reply in batch]
    finally:
        for ws in conns:
            await ws.close()
    elapsed = time.monotonic() - started
    ok = sum(1 for r in replies if "result" in r)
    limited = sum(1 for r in replies if r.get("error", {}).get("code") == -31006)
    assert ok + limited == len(replies) == 36
    after = [metric(r, "guard_connections_total", server="s") for r in fleet.replicas]
    assert all(b > a for a, b in zip(before, after, strict=True)), "every replica served alice"
    assert BURST <= ok <= BURST + RATE * elapsed + 1  # one bucket for the fleet, not one per replica (36)
    figure("rate_limit", {"burst": BURST, "rate_per_s": RATE, "calls": len(replies), "allowed": ok,
                          "refused_-31006": limited, "elapsed_s": round(elapsed, 2), "replicas": 3})


async def test_the_connection_cap_holds_across_replicas(fleet: Fleet) -> None:
    accepted: list[ClientConnection] = []
    refused = 0
    for _ in range(3 * CAP):
        try:
            accepted.append(await open_ws(f"{fleet.ws}/s", "bob"))
        except InvalidStatus as exc:
            assert exc.response.status_code == 429
            refused += 1
    try:
        assert len(accepted) == CAP, "the per-principal cap holds for the whole fleet"
        await accepted.pop().close()
        deadline = time.monotonic() + WAIT
        while True:  # the freed slot is released in Redis in the background
            try:
                accepted.append(await open_ws(f"{fleet.ws}/s", "bob"))
                break
            except InvalidStatus:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        with pytest.raises(InvalidStatus):
            await open_ws(f"{fleet.ws}/s", "bob")
    finally:
        for ws in accepted:
            await ws.close()
    figure("connection_cap", {"cap_per_principal": CAP, "attempts": 3 * CAP, "accepted": CAP, "refused_429": refused})


async def test_a_breaker_opened_by_one_replicas_failures_is_seen_by_the_others(fleet: Fleet) -> None:
    first, *others = fleet.replicas
    url = f"ws://127.0.0.1:{first.port}/mcp/flaky"
    for subject in ("dave", "erin"):  # two principals: one alone never opens it
        ws = await open_ws(url, subject)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT)
        assert ws.close_code == 1013
    opened = time.monotonic()
    for replica in others:
        while True:
            try:
                ws = await open_ws(f"ws://127.0.0.1:{replica.port}/mcp/flaky", "frank")
            except InvalidStatus as exc:
                assert exc.response.status_code == 503 and b"circuit open" in exc.response.body
                break
            await ws.close()
            assert time.monotonic() - opened < WAIT, "the other replica never saw the open breaker"
            await asyncio.sleep(0.05)
    figure("breaker_seen_by_others_s", round(time.monotonic() - opened, 2))
    async with httpx.AsyncClient() as http:
        for replica in fleet.replicas:  # one dead upstream does not take a replica out of the pool
            assert (await http.get(f"{replica.http}/readyz")).status_code == 200
            flaky = await http.get(f"{replica.http}/readyz", params={"upstream": "flaky"})
            assert flaky.status_code == 503 and flaky.json()["checks"]["breaker"]["detail"] == "open"
            assert (await http.get(f"{replica.http}/readyz", params={"upstream": "s"})).status_code == 200
    assert metric(others[0], "guard_circuit_breaker_state", server="flaky", state="open") == 1
    ws = await open_ws(f"{fleet.ws}/s", "dave")  # the other upstream is unaffected
    assert "result" in await call(ws, 1)
    await ws.close()


HTTP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def http_initialize(http: httpx.AsyncClient, url: str, subject: str) -> str:
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "fleet-test", "version": "1"}}}
    answer = await http.post(url, json=body, headers={**HTTP_HEADERS, **tokens.bearer(subject)})
    assert answer.status_code == 200, answer.text
    session = answer.headers["mcp-session-id"]
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers=session_headers(session, subject))
    return session


def session_headers(session: str, subject: str) -> dict[str, str]:
    return {**HTTP_HEADERS, **tokens.bearer(subject), "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}


async def http_call(http: httpx.AsyncClient, url: str, session: str, subject: str, rid: int) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}
    return await http.post(url, json=body, headers=session_headers(session, subject))


async def test_a_streamable_http_session_stays_on_its_replica_and_is_404_elsewhere(fleet: Fleet) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        session = await http_initialize(http, f"{fleet.http}/s", "grace")
        for rid in range(1, 7):  # HAProxy keeps the session on its replica (stick on Mcp-Session-Id)
            answer = await http_call(http, f"{fleet.http}/s", session, "grace", rid)
            assert answer.status_code == 200 and "result" in answer.json()
        statuses = {}
        for replica in fleet.replicas:
            answer = await http_call(http, f"{replica.http}/mcp/s", session, "grace", 99)
            statuses[replica.name] = answer.status_code
        assert sorted(statuses.values()) == [200, 404, 404]  # documented: not forwarded; 404, re-initialize
        stranger = next(r for r in fleet.replicas if statuses[r.name] == 404)
        deadline = time.monotonic() + WAIT
        while metric(stranger, "guard_cluster_unknown_sessions_total", outcome="owned_elsewhere") < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


@dataclass
class Worker:
    """One WebSocket client calling through HAProxy; reconnects when its replica goes away."""

    subject: str
    calls: int
    answers: dict[int, int] = field(default_factory=dict)
    """Logical call -> answers received for it (must end as exactly one each)."""
    lost: int = 0
    """Calls in flight on a connection that died (retried on the next connection)."""
    reconnects: list[float] = field(default_factory=list)
    """Seconds from losing a connection to the first answer on the new one."""

    async def run(self, url: str) -> None:
        n = 0
        lost_at: float | None = None
        while n < self.calls:
            try:
                ws = await open_ws(url, self.subject)
            except (OSError, InvalidStatus, TimeoutError):
                await asyncio.sleep(0.1)
                continue
            try:
                while n < self.calls:
                    await ws.send(json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                                              "params": {"name": "echo", "arguments": {"n": n}}}))
                    reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    assert reply["id"] == n, "an answer to another request"
                    self.answers[n] = self.answers.get(n, 0) + 1
                    if lost_at is not None:
                        self.reconnects.append(time.monotonic() - lost_at)
                        lost_at = None
                    n += 1
                    await asyncio.sleep(0.05)
            except ConnectionClosed:
                self.lost += 1
                lost_at = lost_at or time.monotonic()
            finally:
                await ws.close()


async def test_killing_a_replica_mid_traffic_loses_no_request_and_answers_none_twice(fleet: Fleet) -> None:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        session = await http_initialize(http, f"{fleet.http}/s", "heidi")
        holders = [r for r in fleet.replicas
                   if (await http_call(http, f"{r.http}/mcp/s", session, "heidi", 1)).status_code == 200]
        assert len(holders) == 1
        owner = holders[0]
        workers = [Worker(f"worker-{i}", 40) for i in range(6)]
        tasks = [asyncio.create_task(w.run(f"{fleet.ws}/s")) for w in workers]
        deadline = time.monotonic() + WAIT
        while sum(len(w.answers) for w in workers) < 30:  # traffic flowing on every replica
            assert time.monotonic() < deadline and not any(t.done() for t in tasks)
            await asyncio.sleep(0.05)
        assert owner.proc is not None
        owner.proc.send_signal(signal.SIGKILL)  # the replica holding the HTTP session dies mid-traffic
        killed = time.monotonic()
        owner.proc.wait(10)
        # Streamable HTTP: the session died with its replica; any other replica answers 404 and
        # the client re-initializes (MCP basic/transports, session management)
        dropped = 0
        while True:  # a request sent on a connection the dying replica held gets no response: resent
            try:
                answer = await http_call(http, f"{fleet.http}/s", session, "heidi", 2)
                break
            except httpx.TransportError:
                dropped += 1
                assert dropped < 5
        assert answer.status_code == 404
        renewed = await http_initialize(http, f"{fleet.http}/s", "heidi")
        again = await http_call(http, f"{fleet.http}/s", renewed, "heidi", 3)
        assert again.status_code == 200 and "result" in again.json()
        http_recovered = time.monotonic() - killed
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT * 2)
    for w in workers:
        assert sorted(w.answers) == list(range(40)), "every request answered"
        assert set(w.answers.values()) == {1}, "no request answered twice"
    lost = sum(w.lost for w in workers)
    assert lost >= 1  # the replica really held some of the connections
    reconnects = sorted(t for w in workers for t in w.reconnects)
    figure("replica_kill", {"ws_clients": len(workers), "calls": 40 * len(workers),
                            "connections_lost": lost, "answered_twice": 0, "unanswered": 0,
                            "ws_reconnect_to_first_answer_s_max": round(max(reconnects, default=0.0), 2),
                            "http_kill_to_new_session_answer_s": round(http_recovered, 2),
                            "http_requests_resent_after_drop": dropped})


async def test_redis_killed_and_restarted_mid_traffic_falls_back_locally_and_never_hangs(fleet: Fleet) -> None:
    live = fleet.live()
    workers = [Worker(f"ivan-{i}", 40) for i in range(3)]
    tasks = [asyncio.create_task(w.run(f"{fleet.ws}/s")) for w in workers]
    while sum(len(w.answers) for w in workers) < 10:
        assert not any(t.done() for t in tasks)
        await asyncio.sleep(0.05)
    fleet.redis.kill()
    killed = time.monotonic()
    async with httpx.AsyncClient(timeout=WAIT) as http:
        for replica in live:  # each replica notices, falls back to its local share and stays in the pool
            while metric(replica, "guard_cluster_redis_up") != 0:
                assert time.monotonic() - killed < WAIT
                await asyncio.sleep(0.05)
            ready = await http.get(f"{replica.http}/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["redis"]["detail"].startswith("degraded")
        detected = time.monotonic() - killed
        while sum(len(w.answers) for w in workers) < 60:  # traffic goes on without Redis
            assert not any(t.done() and t.exception() for t in tasks)
            await asyncio.sleep(0.05)
        fleet.redis.start()
        restarted = time.monotonic()
        for replica in live:
            while metric(replica, "guard_cluster_redis_up") != 1:
                assert time.monotonic() - restarted < WAIT
                await asyncio.sleep(0.05)
            ready = (await http.get(f"{replica.http}/readyz")).json()
            assert ready["checks"]["redis"]["detail"].startswith("connected")
        recovered = time.monotonic() - restarted
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT * 2)
    for w in workers:
        assert sorted(w.answers) == list(range(40)) and set(w.answers.values()) == {1}
    fallback = sum(metric(r, "guard_cluster_fallback_total", limit="rate", outcome="allow") for r in live)
    assert fallback > 0  # requests were admitted by the local share while Redis was away
    figure("redis_outage", {"calls": 120, "unanswered": 0, "detected_down_s": round(detected, 2),
                            "reconnected_after_restart_s": round(recovered, 2),
                            "decided_by_local_fallback": int(fallback)})


def test_each_replica_keeps_its_own_audit_chain_and_the_fleet_verifies_per_replica(fleet: Fleet) -> None:
    """``guard audit verify`` over the whole fleet's directories: one chain per replica, named by
    ``[cluster] replica_id``; the replica killed mid-traffic may hold calls in flight at its crash,
    never a broken chain."""
    key = load_verify_key(fleet.workdir / "keys" / devkeys.AUDIT_PUBLIC_KEY)
    result = verify_fleet([replica.config.parent / "audit" for replica in fleet.replicas], keys=[key])
    by_replica = {chain.replica: chain.result.status for chain in result.chains}
    assert set(by_replica) == {replica.name for replica in fleet.replicas}, by_replica
    assert set(by_replica.values()) <= {"intact", "in_flight"}, result.render()
    assert result.records > 0

"""HTTP sessions and the pooled upstream sessions that serve stateless 2026-07-28 requests.

Every HTTP session is a relay with its own upstream (a stdio child, a WebSocket or an
HTTP session), built by :class:`~guard.server.GuardApp` exactly as for a WebSocket
client: same limits, same pipeline, same ``connect``/``close`` events, same drain.

* Legacy Streamable HTTP and 2024-11-05 HTTP+SSE sessions live in :class:`Sessions`,
  found by the id guard issued (``secrets.token_urlsafe(32)``: 256 bits). A session is
  bound to the identity that created it (:func:`owner_of`: issuer and subject, or the
  client host for anonymous endpoints, plus the mTLS certificate subject if any); the id
  presented by anyone else is answered exactly like an unknown id (``404``), so an id
  is no oracle (MCP ``basic/security_best_practices``: session ids are bound to the
  user, never used for authentication).
* 2026-07-28 requests carry no session. :class:`Pools` keeps, per upstream and
  identity, warm upstream sessions and *leases* one to each request for its duration
  (:class:`~guard.transports.exchange.Mode.LEASE`): a sequence of requests reuses one
  stdio child, concurrent requests get one each (bounded by the per-principal
  connection cap), and everything the upstream says while leased belongs to that one
  request, so nothing needs id rewriting and nothing can reach another request. A
  retry that carries the ``requestState`` of an ``InputRequiredResult`` goes back to
  the session that minted it (the upstream may seal it with a per-process key). A
  session whose request was cancelled or timed out is retired rather than reused, so a
  late message from it cannot land on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from guard.context import Principal, SessionInfo
from guard.errors import UpstreamUnavailable
from guard.jsonrpc import ErrorCode
from guard.limits import refusal_status
from guard.transports.base import create_upstream
from guard.transports.exchange import HttpClientConnection, Mode
from guard.transports.mcp_http import Refusal

if TYPE_CHECKING:
    from guard.relay import Relay
    from guard.server import GuardApp

log = logging.getLogger("guard.transports.http")

Owner = tuple[str, str | None]
"""Who a session belongs to: ``principal_key`` and the client certificate subject."""

HTTP_IDLE_FALLBACK = 600.0
"""Idle expiry of an HTTP session when ``server.idle_timeout`` is 0: unlike a WebSocket, an HTTP
client (and a pooled upstream session) can be gone without any connection ending, so an HTTP
session always expires; without this, every departed client would keep its upstream forever."""
AFFINITY_LIMIT = 1024
"""``requestState`` values remembered per pool (oldest forgotten first)."""
AFFINITY_WAIT = 5.0
"""Seconds a retry waits for the busy session that minted its ``requestState``."""


def owner_of(principal: Principal, key: str) -> Owner:
    return key, principal.client_cert_subject


@dataclass(eq=False)
class HttpSession:
    """One relay serving HTTP requests."""

    id: str
    mode: Mode
    owner: Owner
    key: str
    info: SessionInfo
    client: HttpClientConnection
    relay: Relay
    task: asyncio.Task[None] | None = None
    busy: bool = False
    retired: bool = False
    free: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def alive(self) -> bool:
        return self.client.closed is None and not self.retired

    async def end(self, code: int, reason: str) -> None:
        """End the session (DELETE, lost GET stream, retirement); returns once it has ended."""
        self.retired = True
        await self.relay.shutdown(code, reason)
        if self.task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.task), 10.0)


def refusal_for_limit(reason: str) -> Refusal:
    status = refusal_status(reason)
    return Refusal(status, ErrorCode.TOO_MANY_REQUESTS_IN_FLIGHT, "Too many concurrent sessions",
                   {"reason": reason})


class Opener:
    """Builds HTTP sessions through :class:`~guard.server.GuardApp`, as the WebSocket endpoint does."""

    def __init__(self, app: GuardApp) -> None:
        self.app = app
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, name: str, addr: str, principal: Principal, key: str, mode: Mode,
                   on_end: Callable[[HttpSession], None]) -> HttpSession | Refusal:
        """Admit (connection caps, breaker), start the upstream and run the relay in the background."""
        runtime = self.app.runtime
        settings = runtime.settings
        if self.app.draining:
            return Refusal(503, ErrorCode.SHUTTING_DOWN, "Server shutting down", {"reason": "shutting_down"})
        refused = await runtime.connections.enter(key)
        if refused is not None:
            return refusal_for_limit(refused)
        breaker = runtime.breakers.get(name)
        if breaker is not None and not breaker.accepts_connections():  # never takes the half-open probe
            runtime.connections.release(key)
            return Refusal(503, ErrorCode.CIRCUIT_OPEN, "Upstream temporarily unavailable", {"reason": "circuit_open"})
        info = SessionInfo(id=secrets.token_urlsafe(16), server=name, client_addr=addr, principal=principal)
        upstream = create_upstream(settings.upstreams[name], info.id, settings.server.max_message_bytes)
        try:
            await self.app.start_upstream(info, upstream, key)
        except UpstreamUnavailable:
            runtime.connections.release(key)
            return Refusal(503, ErrorCode.UPSTREAM_UNAVAILABLE, "Upstream unavailable",
                           {"reason": "upstream_unavailable"})
        server = settings.server
        client = HttpClientConnection(mode, capacity=server.outbound_queue, backlog=server.outbound_queue)
        relay = self.app.new_relay(info, upstream, client, key,
                                   idle_timeout=server.idle_timeout or HTTP_IDLE_FALLBACK)
        session = HttpSession(id=secrets.token_urlsafe(32), mode=mode, owner=owner_of(principal, key), key=key,
                              info=info, client=client, relay=relay)

        async def run() -> None:
            try:
                await self.app.run_relay(relay, info, upstream, close_at_expiry=False)
            finally:
                runtime.connections.release(key)
                if client.closed is None:
                    await client.close(1000, "session ended")
                on_end(session)

        session.task = asyncio.create_task(run(), name=f"http-session-{info.id}")
        self._tasks.add(session.task)
        session.task.add_done_callback(self._tasks.discard)
        return session

    async def wait_closed(self, timeout: float) -> None:
        """Wait (at shutdown, after the relays were told to close) until every session released its upstream."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)


class Sessions:
    """Legacy Streamable HTTP and HTTP+SSE sessions by id."""

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._by_id: dict[str, HttpSession] = {}
        self._directory = opener.app.runtime.directory
        """Session ownership across a fleet (:mod:`guard.cluster.sessions`); records nothing alone."""

    async def open(self, name: str, addr: str, principal: Principal, key: str,
                   mode: Mode) -> HttpSession | Refusal:
        opened = await self._opener.open(name, addr, principal, key, mode, self._ended)
        if isinstance(opened, HttpSession):
            self._by_id[opened.id] = opened
            self._directory.claim(opened.id)
        return opened

    def find(self, session_id: str, name: str, owner: Owner, mode: Mode) -> HttpSession | None:
        """The live session with this id, upstream and owner; ``None`` in every other case (404)."""
        session = self._by_id.get(session_id)
        if session is None and session_id:
            self._directory.unknown(session_id)  # logs and counts why (another replica's, ...); still 404
        if session is None or not session.alive or session.info.server != name or session.mode is not mode:
            return None
        if not secrets.compare_digest(repr(session.owner), repr(owner)):
            log.warning("HTTP session %s presented by another principal: refused as unknown", session.info.id)
            return None
        return session

    def _ended(self, session: HttpSession) -> None:
        if self._by_id.pop(session.id, None) is not None:
            self._directory.drop(session.id)

    def __len__(self) -> int:
        return len(self._by_id)


@dataclass(eq=False)
class _Pool:
    idle: list[HttpSession] = field(default_factory=list)
    members: set[HttpSession] = field(default_factory=set)
    affinity: OrderedDict[str, HttpSession] = field(default_factory=OrderedDict)


class Pools:
    """Warm upstream sessions leased to stateless (2026-07-28) requests, per upstream and owner."""

    def __init__(self, opener: Opener) -> None:
        self._opener = opener
        self._pools: dict[tuple[str, Owner], _Pool] = {}

    async def lease(self, name: str, addr: str, principal: Principal, key: str,
                    request_state: str | None = None) -> HttpSession | Refusal:
        """A session for one request, held until :meth:`release` or :meth:`retire`.

        The session's principal becomes this request's: the pipeline authorizes the
        request, and everything the upstream sends while leased, as exactly the
        principal that authenticated it.
        """
        pool_key = (name, owner_of(principal, key))
        pool = self._pools.setdefault(pool_key, _Pool())
        session = await self._preferred(pool, request_state)
        if session is None:
            while pool.idle and session is None:
                candidate = pool.idle.pop()
                session = candidate if candidate.alive else None
        if session is None:
            opened = await self._opener.open(name, addr, principal, key, Mode.LEASE,
                                             lambda s: self._ended(pool_key, s))
            if not isinstance(opened, HttpSession):
                return opened
            session = opened
            pool.members.add(session)
        session.busy = True
        session.free.clear()
        session.info.principal = principal
        return session

    async def _preferred(self, pool: _Pool, request_state: str | None) -> HttpSession | None:
        if request_state is None:
            return None
        session = pool.affinity.get(request_state)
        if session is None:
            return None
        deadline = time.monotonic() + AFFINITY_WAIT
        while session.alive and session.busy and time.monotonic() < deadline:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(session.free.wait(), deadline - time.monotonic())
        if not session.alive or session.busy:
            return None
        with contextlib.suppress(ValueError):
            pool.idle.remove(session)
        return session

    def release(self, session: HttpSession, request_state: str | None = None) -> None:
        """The request got its answer: the session goes back to the pool (remembering a minted state)."""
        session.busy = False
        session.free.set()
        if not session.alive:
            return
        pool = self._pools.setdefault((session.info.server, session.owner), _Pool())
        pool.members.add(session)
        if request_state is not None:
            pool.affinity[request_state] = session
            pool.affinity.move_to_end(request_state)
            while len(pool.affinity) > AFFINITY_LIMIT:
                pool.affinity.popitem(last=False)
        pool.idle.append(session)

    async def retire(self, session: HttpSession, reason: str) -> None:
        """Never reuse ``session`` (its request was cancelled or timed out): end it."""
        session.busy = False
        session.free.set()
        await session.end(1000, reason)

    def _ended(self, pool_key: tuple[str, Owner], session: HttpSession) -> None:
        session.free.set()
        pool = self._pools.get(pool_key)
        if pool is None:
            return
        pool.members.discard(session)
        with contextlib.suppress(ValueError):
            pool.idle.remove(session)
        for state in [s for s, owner in pool.affinity.items() if owner is session]:
            del pool.affinity[state]
        if not pool.members:
            del self._pools[pool_key]

    @property
    def sessions(self) -> int:
        return sum(len(p.members) for p in self._pools.values())

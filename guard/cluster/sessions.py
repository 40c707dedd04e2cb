"""Who holds a legacy Streamable HTTP session: recorded in Redis so a miss can be explained.

guard does **not** forward a request for a session another replica holds. A session is a
live relay (an upstream child, a WebSocket, pending requests, a GET stream) in one process;
any replica that does not hold it answers exactly as for an unknown id, ``404 Not Found``,
and the client starts a new session with ``initialize`` (MCP 2025-11-25
``basic/transports`` "Session Management": a 404 for a request carrying a session id means
the client MUST start a new session). Load balancers keep a session on its replica by the
``Mcp-Session-Id`` header (docs/operators.md, "Fleet"); the 404 happens only when that
replica is gone or the balancer moved the client.

The directory only tells the replica's logs and metrics (``guard_cluster_unknown_sessions_total``)
*why* an id is unknown: held by a live replica (the balancer is not sticky), by a replica
whose lease expired (it died), ended here, or never seen. Keys hold a digest of the id,
never the id (a session id is a credential-like handle); the answer is the same 404 in
every case, so the directory is no oracle either.
"""

from __future__ import annotations

import logging
from typing import Any

from guard.cluster.store import SharedStore, digest

log = logging.getLogger("guard.cluster")

SESSION_KEY_TTL = 86_400
"""Seconds an ownership record outlives a replica that died without removing it."""


class FleetDirectory:
    """Session ownership in Redis, written and read in the background."""

    def __init__(self, store: SharedStore) -> None:
        self.store = store

    def _key(self, session_id: str) -> str:
        return self.store.key("session", digest(session_id))

    def claim(self, session_id: str) -> None:
        key, me = self._key(session_id), self.store.replica_id

        async def write(client: Any) -> None:
            await client.set(key, me, ex=SESSION_KEY_TTL)

        self.store.spawn("sessions", write)

    def drop(self, session_id: str) -> None:
        key = self._key(session_id)

        async def delete(client: Any) -> None:
            await client.delete(key)

        self.store.spawn("sessions", delete)

    def unknown(self, session_id: str) -> None:
        store = self.store
        if not store.up:
            store.metrics.unknown_sessions.labels(outcome="lookup_failed").inc()
            return
        script = store.script("SESSION_OWNER")
        key = self._key(session_id)
        shown = digest(session_id)[:8]

        async def explain(client: Any) -> None:
            try:
                owner, alive = await script(keys=[key, store.replicas_key], args=[], client=client)
            except Exception:
                store.metrics.unknown_sessions.labels(outcome="lookup_failed").inc()
                raise
            if not owner:
                outcome = "unknown"
            elif owner == store.replica_id:
                outcome = "ended"
            else:
                outcome = "owned_elsewhere" if int(alive) else "owner_gone"
            store.metrics.unknown_sessions.labels(outcome=outcome).inc()
            log.info("HTTP session %s… not held here (404): %s%s", shown, outcome,
                     f" (replica {owner})" if owner and owner != store.replica_id else "")

        store.spawn("sessions", explain)

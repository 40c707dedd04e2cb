"""Requests whose outcome the log never recorded: "in flight at crash" (issue 15).

guard writes the record of every client request it forwards *before* forwarding it
(write-ahead, ``guard.write_ahead`` names the durability policy in force), and the record of
its outcome (the upstream's answer, or the error guard answered with) refers back to it with
``guard.request.event_id``. A session's ``close`` record ends whatever of that session is
still open (a request the client abandoned by leaving has no answer to record). So once
the chain is read, a write-ahead record nobody referred to is a request that was forwarded
(and may have run upstream) when guard stopped without closing its session: a crash,
SIGKILL or power loss; or, on the log of a guard that is still running, a request in
flight right now. It is not tampering, and it is not "intact" either: the log proves the
call was made but not how it ended. No I/O; fed by :mod:`guard.audit.verify`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Pending:
    """One write-ahead request record still waiting for its outcome."""

    event_id: str
    where: Any
    order: tuple[int, int]
    method: str
    session: str | None


@dataclass
class InFlightTracker:
    """Follows write-ahead request records and the records that end them, in chain order."""

    open: dict[str, Pending] = field(default_factory=dict)
    by_session: dict[str, set[str]] = field(default_factory=dict)

    def feed(self, obj: dict[str, Any], where: Any, order: tuple[int, int]) -> None:
        guard = obj.get("guard")
        event = obj.get("event")
        if not isinstance(guard, dict) or not isinstance(event, dict):
            return
        session = guard.get("session")
        found = session.get("id") if isinstance(session, dict) else None
        session_id = found if isinstance(found, str) else None
        request = guard.get("request")
        ref = request.get("event_id") if isinstance(request, dict) else None
        if isinstance(ref, str):
            self._end(ref)
        if event.get("action") == "close" and session_id is not None:
            for ended in self.by_session.pop(session_id, set()):
                self.open.pop(ended, None)
            return
        event_id = event.get("id")
        if isinstance(guard.get("write_ahead"), str) and isinstance(event_id, str):
            rpc = guard.get("rpc")
            method = rpc.get("method") if isinstance(rpc, dict) else None
            self.open[event_id] = Pending(event_id, where, order, method if isinstance(method, str) else "?",
                                          session_id)
            if session_id is not None:
                self.by_session.setdefault(session_id, set()).add(event_id)

    def _end(self, event_id: str) -> None:
        pending = self.open.pop(event_id, None)
        if pending is not None and pending.session is not None:
            ids = self.by_session.get(pending.session)
            if ids is not None:
                ids.discard(event_id)

    def unresolved(self) -> list[Pending]:
        """Write-ahead records without an outcome, in chain order."""
        return sorted(self.open.values(), key=lambda p: p.order)

"""The interface the HTTP front door records session ownership through (no ``redis`` here).

Without ``[cluster]`` it is :class:`LocalDirectory` (records nothing); with it,
:class:`guard.cluster.sessions.FleetDirectory` (Redis).
"""

from __future__ import annotations

from typing import Protocol


class Directory(Protocol):
    """Where HTTP session ownership is recorded; the HTTP front door calls it, never waits on it."""

    def claim(self, session_id: str) -> None: ...

    def drop(self, session_id: str) -> None: ...

    def unknown(self, session_id: str) -> None: ...


class LocalDirectory:
    """Without ``[cluster]``: nothing to record; every miss is simply unknown."""

    def claim(self, session_id: str) -> None:
        return None

    def drop(self, session_id: str) -> None:
        return None

    def unknown(self, session_id: str) -> None:
        return None

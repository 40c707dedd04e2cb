"""Per-request deadlines for one session behind a single loop timer.

Deadlines are kept in arming order, which is deadline order because a session has one
``call_timeout``; one ``loop.call_at`` timer waits for the earliest and, when it fires, expires
every deadline that has passed and re-arms for the next. A libuv timer per request cost ~6% of
guard's CPU per call (bench/README.md); disarming is a dictionary pop (the timer skips what is
gone). ``on_expiry`` runs synchronously in the loop's timer callback: it must not block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from guard.jsonrpc import RequestId, id_key


class Deadlines:
    """``arm(id, seconds)``, ``disarm(id)``; ``on_expiry(id)`` for each one that passes."""

    def __init__(self, on_expiry: Callable[[RequestId], None]) -> None:
        self._on_expiry = on_expiry
        self._pending: dict[tuple[type, RequestId], tuple[float, RequestId]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, request_id: RequestId, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._pending[id_key(request_id)] = (deadline, request_id)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._sweep)

    def disarm(self, request_id: RequestId) -> None:
        self._pending.pop(id_key(request_id), None)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()

    def _sweep(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._pending:
            key, (deadline, request_id) = next(iter(self._pending.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._sweep)
                return
            del self._pending[key]
            self._on_expiry(request_id)

"""Per-connection state: which requests are awaiting an answer, in each direction. No I/O.

Each client connection has its own upstream connection (or child process), so a
reply can only ever reach the session that asked. On top of that, the session
tracks request ids both ways so that:

* every client request that enters guard gets exactly one response (the upstream's,
  or an error guard generates: denial, duplicate id, upstream gone);
* a response whose id matches no pending request is dropped, never delivered;
* a client cannot have more than ``max_in_flight`` requests awaiting an answer.
"""

from __future__ import annotations

import time
from typing import Any

from guard.context import Direction, RequestRecord, SessionInfo
from guard.errors import InvalidRequest
from guard.jsonrpc import RequestId, id_key


class InFlightLimitExceeded(InvalidRequest):
    """The connection already has ``max_in_flight`` requests awaiting an answer."""


class Session:
    """Request correlation for one client connection."""

    def __init__(self, info: SessionInfo, max_in_flight: int = 256) -> None:
        self.info = info
        self.max_in_flight = max_in_flight
        self._client_pending: dict[tuple[type, RequestId], RequestRecord] = {}
        self._server_pending: dict[tuple[type, RequestId], RequestRecord] = {}

    # Client -> server requests -------------------------------------------------

    def open_client_request(
        self, request_id: RequestId, method: str, target: str | None, params: dict[str, Any]
    ) -> RequestRecord:
        """Register a client request before it is processed.

        Raises :class:`InvalidRequest` for an id already in flight (answering both would
        break the one-response rule) and :class:`InFlightLimitExceeded` past the cap.
        """
        key = id_key(request_id)
        if key in self._client_pending:
            raise InvalidRequest("Invalid Request: id is already in use by a pending request", request_id)
        if len(self._client_pending) >= self.max_in_flight:
            raise InFlightLimitExceeded("Too many requests in flight on this connection", request_id)
        record = RequestRecord(
            id=request_id,
            method=method,
            target=target,
            direction=Direction.CLIENT_TO_SERVER,
            started=time.perf_counter(),
            params=params,
        )
        self._client_pending[key] = record
        return record

    def close_client_request(self, request_id: RequestId) -> RequestRecord | None:
        """Forget a client request (answered, denied or cancelled); ``None`` if it was not pending."""
        return self._client_pending.pop(id_key(request_id), None)

    def cancel_client_request(self, request_id: Any) -> RequestRecord | None:
        """The client sent ``notifications/cancelled``: it will ignore any answer, so stop tracking."""
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return None
        return self._client_pending.pop(id_key(request_id), None)

    def drain_client_requests(self) -> list[RequestRecord]:
        """Every client request still awaiting an answer (the upstream is gone); clears them."""
        pending = list(self._client_pending.values())
        self._client_pending.clear()
        return pending

    @property
    def client_in_flight(self) -> int:
        return len(self._client_pending)

    # Server -> client requests (legacy era: sampling, elicitation, roots, ping) -----

    def open_server_request(
        self, request_id: RequestId, method: str, params: dict[str, Any]
    ) -> RequestRecord:
        key = id_key(request_id)
        if key in self._server_pending:
            raise InvalidRequest("Invalid Request: id is already in use by a pending request", request_id)
        if len(self._server_pending) >= self.max_in_flight:
            raise InFlightLimitExceeded("Too many requests in flight on this connection", request_id)
        record = RequestRecord(
            id=request_id,
            method=method,
            target=None,
            direction=Direction.SERVER_TO_CLIENT,
            started=time.perf_counter(),
            params=params,
        )
        self._server_pending[key] = record
        return record

    def close_server_request(self, request_id: RequestId) -> RequestRecord | None:
        return self._server_pending.pop(id_key(request_id), None)

    def cancel_server_request(self, request_id: Any) -> RequestRecord | None:
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return None
        return self._server_pending.pop(id_key(request_id), None)

    def drain_server_requests(self) -> list[RequestRecord]:
        pending = list(self._server_pending.values())
        self._server_pending.clear()
        return pending

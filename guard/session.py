"""Per-connection state: which requests are awaiting an answer, in each direction. No I/O.

Each client connection has its own upstream connection (or child process), so a
reply can only ever reach the session that asked. On top of that, the session
tracks request ids both ways so that:

* every client request that enters guard gets exactly one response (the upstream's,
  or an error guard generates: denial, duplicate id, upstream gone);
* a response whose id matches no pending request is dropped, never delivered;
* a client cannot have more than ``max_in_flight`` requests awaiting an answer.

**Upstream ids.** guard never forwards the client's request id: every forwarded request gets
a fresh id, unique for the session (1, 2, 3, ...), and the upstream's answer is matched by it and
handed back under the client's id. A late answer to a request that was cancelled or timed out
can therefore never be taken for the answer to a newer request that reuses the client's id
(JSON-RPC 2.0 section 4 lets ids be reused once answered; MCP ``basic/utilities/cancellation``
lets a receiver answer anyway, and the answer is to be ignored).

**Cancelled requests** (``notifications/cancelled`` from the client) stay reserved: their id
cannot be reused and they count against ``max_in_flight`` until the upstream answers them
(the answer is dropped) or their deadline passes (:meth:`Session.expire_client_request`).

**Modern-era input responses** (MCP 2026-07-28 ``basic/patterns/mrtr``): a retried request
carrying ``params.inputResponses`` is forwarded only if it answers an ``InputRequiredResult``
guard delivered on this session, for the same method and target, with the same
``requestState``, and only for keys that result asked for; each delivered result can be
answered once. This mirrors the legacy era, where a client response is forwarded only if it
answers a pending server->client request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from guard.context import Direction, RequestRecord, SessionInfo
from guard.errors import InvalidRequest
from guard.jsonrpc import RequestId, id_key

DUPLICATE_ID = "duplicate_id"
"""Audit reason of a request refused because its id is already pending (``ProtocolError.reason``)."""
TOO_MANY_IN_FLIGHT = "too_many_in_flight"
"""Audit reason of a request refused past ``max_in_flight``."""


class InFlightLimitExceeded(InvalidRequest):
    """The connection already has ``max_in_flight`` requests awaiting an answer."""


@dataclass(frozen=True, slots=True)
class _InputRequired:
    """An ``InputRequiredResult`` guard delivered, awaiting the client's retry."""

    method: str
    target: str | None
    request_state: str | None
    keys: frozenset[str]


class Session:
    """Request correlation for one client connection."""

    def __init__(self, info: SessionInfo, max_in_flight: int = 256) -> None:
        self.info = info
        self.max_in_flight = max_in_flight
        self._client_pending: dict[tuple[type, RequestId], RequestRecord] = {}
        self._by_upstream_id: dict[int, RequestRecord] = {}
        self._next_upstream_id = 0
        self._cancelled = 0
        self._server_pending: dict[tuple[type, RequestId], RequestRecord] = {}
        self._input_required: OrderedDict[int, _InputRequired] = OrderedDict()
        self._input_required_seq = 0

    # Client -> server requests -------------------------------------------------

    def open_client_request(
        self, request_id: RequestId, method: str, target: str | None, params: dict[str, Any]
    ) -> RequestRecord:
        """Register a client request before it is processed, with a fresh upstream id.

        Raises :class:`InvalidRequest` for an id already in flight or reserved by a cancelled
        request (answering both would break the one-response rule) and
        :class:`InFlightLimitExceeded` past the cap (cancelled requests count).
        """
        key = id_key(request_id)
        if key in self._client_pending:
            raise InvalidRequest("Invalid Request: id is already in use by a pending request", request_id,
                                 reason=DUPLICATE_ID)
        if len(self._client_pending) >= self.max_in_flight:
            raise InFlightLimitExceeded("Too many requests in flight on this connection", request_id,
                                        reason=TOO_MANY_IN_FLIGHT)
        self._next_upstream_id += 1
        record = RequestRecord(
            id=request_id,
            method=method,
            target=target,
            direction=Direction.CLIENT_TO_SERVER,
            started=time.perf_counter(),
            params=params,
            upstream_id=self._next_upstream_id,
        )
        self._client_pending[key] = record
        self._by_upstream_id[self._next_upstream_id] = record
        return record

    def client_request(self, request_id: RequestId) -> RequestRecord | None:
        """The pending (or cancelled, still reserved) request with this client id."""
        return self._client_pending.get(id_key(request_id))

    def close_client_request(self, request_id: RequestId) -> RequestRecord | None:
        """Forget a client request (answered, denied or expired); ``None`` if it was not pending."""
        record = self._client_pending.pop(id_key(request_id), None)
        if record is not None:
            self._forget(record)
        return record

    def answer_from_upstream(self, upstream_id: Any) -> RequestRecord | None:
        """The request an upstream response answers (by the id guard sent), now forgotten.

        ``None`` when no pending request has that upstream id (unsolicited, or an answer that
        arrived after its request timed out). A returned record may be ``cancelled``: the
        client asked not to be answered, so the relay drops the response.
        """
        if not isinstance(upstream_id, int) or isinstance(upstream_id, bool):
            return None
        record = self._by_upstream_id.get(upstream_id)
        if record is None:
            return None
        self._client_pending.pop(id_key(record.id), None)
        self._forget(record)
        return record

    def _forget(self, record: RequestRecord) -> None:
        if record.upstream_id is not None:
            self._by_upstream_id.pop(record.upstream_id, None)
        if record.cancelled:
            self._cancelled -= 1

    def cancel_client_request(self, request_id: Any) -> RequestRecord | None:
        """The client sent ``notifications/cancelled``: it will ignore any answer.

        The request stays reserved (its id is not reusable and it counts against
        ``max_in_flight``) until the upstream answers or :meth:`expire_client_request`.
        Returns the record the first time, ``None`` for unknown or already cancelled ids.
        """
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return None
        record = self._client_pending.get(id_key(request_id))
        if record is None or record.cancelled:
            return None
        record.cancelled = True
        self._cancelled += 1
        return record

    def expire_client_request(self, request_id: RequestId) -> RequestRecord | None:
        """A request's deadline passed: forget it (a cancelled one's reservation ends)."""
        return self.close_client_request(request_id)

    def drain_client_requests(self) -> list[RequestRecord]:
        """Every client request still tracked (the upstream is gone or the session ends); clears them.

        Cancelled ones are included: the caller answers only those that are not ``cancelled``.
        """
        pending = list(self._client_pending.values())
        self._client_pending.clear()
        self._by_upstream_id.clear()
        self._cancelled = 0
        return pending

    @property
    def client_in_flight(self) -> int:
        """Requests counted against ``max_in_flight``: awaiting an answer, or cancelled and reserved."""
        return len(self._client_pending)

    @property
    def client_awaiting(self) -> int:
        """Requests whose answer the client still expects (cancelled ones excluded)."""
        return len(self._client_pending) - self._cancelled

    # Modern-era input responses (InputRequiredResult retries) ----------------------

    def input_required_delivered(self, method: str, target: str | None, result: dict[str, Any]) -> None:
        """guard delivered an ``InputRequiredResult`` for ``method``/``target``: expect one retry.

        At most ``max_in_flight`` such results are remembered per session; the oldest is
        forgotten first (its retry is then refused, and the client starts the call afresh).
        """
        requests = result.get("inputRequests")
        keys = frozenset(requests) if isinstance(requests, dict) else frozenset()
        state = result.get("requestState")
        self._input_required_seq += 1
        self._input_required[self._input_required_seq] = _InputRequired(
            method, target, state if isinstance(state, str) else None, keys)
        while len(self._input_required) > self.max_in_flight:
            self._input_required.popitem(last=False)

    def take_input_responses(self, method: str, target: str | None, params: dict[str, Any]) -> bool:
        """May a request with these params be forwarded, as far as ``inputResponses`` go?

        True when it carries none. Otherwise it must answer a delivered ``InputRequiredResult``
        (same method, target and ``requestState``; only keys that result asked for); that
        result is then used up.
        """
        if "inputResponses" not in params:
            return True
        responses = params["inputResponses"]
        if not isinstance(responses, dict):
            return False
        state = params.get("requestState")
        for seq, expected in self._input_required.items():
            if (expected.method == method and expected.target == target and expected.request_state == state
                    and expected.keys.issuperset(responses)):
                del self._input_required[seq]
                return True
        return False

    # Server -> client requests (legacy era: sampling, elicitation, roots, ping) -----

    def open_server_request(
        self, request_id: RequestId, method: str, params: dict[str, Any]
    ) -> RequestRecord:
        key = id_key(request_id)
        if key in self._server_pending:
            raise InvalidRequest("Invalid Request: id is already in use by a pending request", request_id,
                                 reason=DUPLICATE_ID)
        if len(self._server_pending) >= self.max_in_flight:
            raise InFlightLimitExceeded("Too many requests in flight on this connection", request_id,
                                        reason=TOO_MANY_IN_FLIGHT)
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

    @property
    def server_in_flight(self) -> int:
        """Server->client requests waiting for the client's answer."""
        return len(self._server_pending)

"""Request correlation without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.context import SessionInfo
from guard.errors import InvalidRequest
from guard.session import InFlightLimitExceeded, Session


def new_session(limit: int = 256) -> Session:
    return Session(SessionInfo(id="s", server="demo", client_addr="127.0.0.1:1"), limit)


def test_a_response_is_matched_once() -> None:
    s = new_session()
    s.open_client_request(1, "tools/call", "x", {})
    assert s.close_client_request(1) is not None
    assert s.close_client_request(1) is None


def test_int_and_string_ids_do_not_collide() -> None:
    s = new_session()
    s.open_client_request(1, "ping", None, {})
    s.open_client_request("1", "ping", None, {})
    assert s.client_in_flight == 2


def test_duplicate_in_flight_id_is_refused() -> None:
    s = new_session()
    s.open_client_request(7, "ping", None, {})
    with pytest.raises(InvalidRequest):
        s.open_client_request(7, "ping", None, {})


def test_in_flight_cap() -> None:
    s = new_session(limit=1)
    s.open_client_request(1, "ping", None, {})
    with pytest.raises(InFlightLimitExceeded):
        s.open_client_request(2, "ping", None, {})


def test_cancel_forgets_and_ignores_garbage_ids() -> None:
    s = new_session()
    s.open_client_request(1, "ping", None, {})
    assert s.cancel_client_request(1) is not None
    assert s.cancel_client_request(True) is None
    assert s.cancel_client_request(None) is None


def test_server_requests_are_tracked_separately() -> None:
    s = new_session()
    s.open_client_request(1, "ping", None, {})
    s.open_server_request(1, "sampling/createMessage", {})
    assert s.close_server_request(1) is not None
    assert s.close_client_request(1) is not None


@given(st.lists(st.integers(0, 20) | st.text(max_size=2), max_size=60))
def test_every_opened_request_is_answered_exactly_once(ids: list[int | str]) -> None:
    s = new_session()
    opened = set()
    for rid in ids:
        try:
            s.open_client_request(rid, "ping", None, {})
            opened.add((type(rid), rid))
        except InvalidRequest:
            assert (type(rid), rid) in opened
    drained = {(type(r.id), r.id) for r in s.drain_client_requests()}
    assert drained == opened
    assert s.client_in_flight == 0

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


# Cancelled requests and id reuse (issue 12, item 10) ----------------------------------------


def test_cancelled_request_stays_reserved_and_counted() -> None:
    s = new_session(limit=2)
    record = s.open_client_request(1, "tools/call", "export", {})
    assert s.cancel_client_request(1) is record and record.cancelled
    assert s.cancel_client_request(1) is None  # only the first cancel counts
    with pytest.raises(InvalidRequest):
        s.open_client_request(1, "tools/call", "harmless", {})  # reserved until answered or expired
    s.open_client_request(2, "ping", None, {})
    with pytest.raises(InFlightLimitExceeded):
        s.open_client_request(3, "ping", None, {})  # the cancelled request still counts
    assert s.client_in_flight == 2 and s.client_awaiting == 1
    late = s.answer_from_upstream(record.upstream_id)
    assert late is record and late.cancelled  # the relay drops it
    assert s.open_client_request(1, "tools/call", "harmless", {}).upstream_id != record.upstream_id


def test_upstream_ids_are_fresh_for_every_request() -> None:
    s = new_session()
    first = s.open_client_request(1, "ping", None, {})
    s.close_client_request(1)
    second = s.open_client_request(1, "ping", None, {})
    assert first.upstream_id != second.upstream_id
    assert s.answer_from_upstream(first.upstream_id) is None  # an answer to the old request finds nothing
    assert s.answer_from_upstream(True) is None and s.answer_from_upstream("2") is None


reuse_ops = st.lists(st.tuples(st.sampled_from(["open", "cancel", "answer", "expire"]), st.integers(0, 3),
                               st.integers(0, 30)), max_size=80)


@given(reuse_ops)
def test_an_answer_is_only_ever_delivered_to_the_request_it_answers(ops: list[tuple[str, int, int]]) -> None:
    """Random open/cancel/answer/expire sequences over a few reused ids, against a model."""
    s = new_session(limit=3)
    sent: list[tuple[int, int]] = []  # (upstream id, tag) of every forwarded request, in order
    live: dict[int, tuple[int, bool]] = {}  # client id -> (tag, cancelled)
    for tag, (op, cid, pick) in enumerate(ops):
        if op == "open":
            try:
                record = s.open_client_request(cid, "tools/call", None, {"tag": tag})
            except InFlightLimitExceeded:
                assert cid not in live and len(live) >= 3
                continue
            except InvalidRequest:
                assert cid in live
                continue
            assert cid not in live and len(live) < 3
            live[cid] = (tag, False)
            assert record.upstream_id is not None
            sent.append((record.upstream_id, tag))
        elif op == "cancel":
            record = s.cancel_client_request(cid)
            expected = cid in live and not live[cid][1]
            assert (record is not None) == expected
            if expected:
                live[cid] = (live[cid][0], True)
        elif op == "answer" and sent:
            upstream_id, tag_sent = sent[pick % len(sent)]  # the upstream may answer anything, late or twice
            record = s.answer_from_upstream(upstream_id)
            owner = next((c for c, (t, _) in live.items() if t == tag_sent), None)
            if owner is None:
                assert record is None  # answered, timed out or expired before: never delivered
            else:
                assert record is not None and record.id == owner and record.params == {"tag": tag_sent}
                assert record.cancelled == live.pop(owner)[1]  # a cancelled one is dropped by the relay
        elif op == "expire":
            record = s.expire_client_request(cid)
            assert (record is not None) == (cid in live)
            live.pop(cid, None)
        assert s.client_in_flight == len(live)
        assert s.client_awaiting == sum(1 for _, cancelled in live.values() if not cancelled)

"""The hot-path shortcuts the relay benchmark introduced agree with the slow, obvious versions.

* :func:`guard.jsonrpc._has_long_digit_run` (translate + substring search) finds exactly the
  frames the regex ``[0-9]{19,}`` finds, so big integers still take the exact parser;
* :class:`guard.metrics_flow.LoopSeries` exports the same Prometheus text as
  ``prometheus_client``'s ``Counter`` and ``Histogram``;
* the per-message enums hash by identity (in C) and behave as enums otherwise;
* the relay's per-call timeouts (one sweeping timer per session instead of one timer per
  request) still answer every late call at its own deadline, and only those.
"""

from __future__ import annotations

import asyncio
import enum
import json
import pickle
import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from guard.context import Action, Direction, EventKind, SessionInfo
from guard.jsonrpc import ErrorCode, Kind, Message, _has_long_digit_run, parse, serialize
from guard.metrics import STAGE_BUCKETS, _LoopCollector
from guard.metrics_flow import LoopSeries
from guard.pipeline import Pipeline
from guard.relay import Relay, RelayLimits
from guard.session import Session

LONG_DIGITS = re.compile(r"[0-9]{19,}")

digit_heavy = st.text(alphabet=st.sampled_from("0123456789 -.e,\"é٣\U0001f600"), max_size=80)


@given(st.one_of(digit_heavy, st.text(max_size=80)))
def test_digit_run_check_matches_the_regex(text: str) -> None:
    encoded = text.encode("utf-8", "surrogatepass")
    assert _has_long_digit_run(encoded) == (LONG_DIGITS.search(text) is not None)


def test_non_ascii_digits_do_not_count_as_a_run() -> None:
    assert not _has_long_digit_run(("\u0661" * 30).encode())  # ARABIC-INDIC DIGIT ONE


@given(st.integers(min_value=-(10**40), max_value=10**40))
def test_integers_of_any_size_survive_a_round_trip(value: int) -> None:
    frame = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                        "params": {"name": "t", "arguments": {"n": value, "deep": [{"m": value}]}}})
    message = parse(frame)
    assert message.params["arguments"]["n"] == value
    assert json.loads(serialize(message)) == json.loads(frame)


def _exposition(registry: CollectorRegistry) -> str:
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", generate_latest(registry).decode())


def test_loop_metrics_export_exactly_what_prometheus_client_exports() -> None:
    reference, fast = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    counter = Counter("guard_things", "Things.", ["a", "b"], registry=reference)
    histogram = Histogram("guard_wait_seconds", "Waits.", ["a"], buckets=STAGE_BUCKETS, registry=reference)
    fast_counter = LoopSeries("guard_things", "Things.", ["a", "b"])
    fast_histogram = LoopSeries("guard_wait_seconds", "Waits.", ["a"], buckets=STAGE_BUCKETS)
    fast.register(_LoopCollector([fast_counter, fast_histogram]))
    for c in (counter, fast_counter):
        c.labels(a="x", b="y").inc()
        c.labels(a="x", b="y").inc()
        c.labels(a="z", b="y").inc()
    for h in (histogram, fast_histogram):
        for seconds in (0.00005, 0.0001, 0.0003, 0.001, 0.7, 2.5, 100.0):  # includes values on a bound
            h.labels(a="q").observe(seconds)
    assert _exposition(fast) == _exposition(reference)


# Per-call timeouts: one sweeping timer instead of a timer per request ------------------------


class _Client:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[tuple[float, dict[str, Any]]] = []

    async def receive(self) -> str | bytes | None:
        return await self.inbox.get()

    async def send(self, text: str) -> None:
        self.sent.append((time.monotonic(), json.loads(text)))

    async def close(self, code: int, reason: str) -> None:
        self.inbox.put_nowait(None)


class _SilentUpstream:
    """Never answers on its own; ``answer(id)`` makes it reply to one request."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.received: list[dict[str, Any]] = []

    async def start(self) -> None:
        return None

    async def send(self, text: str, message: Message) -> None:
        self.received.append(json.loads(text))

    def answer(self, rid: int) -> None:
        self.outbox.put_nowait(json.dumps({"jsonrpc": "2.0", "id": rid, "result": {"ok": True}}))

    async def receive(self) -> str:
        return await self.outbox.get()

    async def aclose(self) -> None:
        return None


async def test_each_pending_call_times_out_at_its_own_deadline_and_answered_ones_never_do() -> None:
    client, upstream = _Client(), _SilentUpstream()
    relay = Relay(session=Session(SessionInfo(id="t", server="s", client_addr="x")), pipeline=Pipeline(),
                  client=client, upstream=upstream, limits=RelayLimits(call_timeout=1.0))
    task = asyncio.create_task(relay.run())
    started = time.monotonic()
    sent_at = {}
    for rid in (1, 2, 3):
        sent_at[rid] = time.monotonic()
        client.inbox.put_nowait(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                                            "params": {"name": "slow"}}))
        await asyncio.sleep(0.1)
    upstream.answer(2)  # answered well before its deadline: no timeout for it, ever
    await asyncio.sleep(1.5)
    await relay.shutdown(1000, "done")
    await task
    replies = {reply["id"]: (at, reply) for at, reply in client.sent}
    assert set(replies) == {1, 2, 3} and len(client.sent) == 3  # exactly one answer each
    assert replies[2][1]["result"] == {"ok": True}
    for rid in (1, 3):
        at, reply = replies[rid]
        assert reply["error"]["code"] == ErrorCode.UPSTREAM_TIMEOUT
        assert 0.95 <= at - sent_at[rid] <= 1.4, (rid, at - sent_at[rid])
    cancelled = [m["params"]["requestId"] for m in upstream.received if m.get("method") == "notifications/cancelled"]
    assert sorted(cancelled) == [1, 3]
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("enum_class", [Kind, Direction, Action, EventKind])
def test_hot_path_enums_hash_by_identity_and_still_behave_as_enums(enum_class: type[enum.Enum]) -> None:
    """The per-message enums hash by identity in C (``Enum.__hash__`` is Python code run per lookup).

    Members are singletons, so identity hashing keeps dict and set semantics; lookup by value,
    iteration and pickling are unchanged.
    """
    for member in enum_class:
        assert hash(member) == object.__hash__(member)
        assert {member: 1}[member] == 1 and member in set(enum_class)
        assert enum_class(member.value) is member
        assert pickle.loads(pickle.dumps(member)) is member
    assert len({m: m.value for m in enum_class}) == len(list(enum_class))

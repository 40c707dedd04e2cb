"""The circuit breaker's state machine with a frozen clock (issue 12, item 8). No sockets.

* one principal's failures can never open it, whatever they do;
* it opens once failures from two principals reach the threshold;
* half-open probes are real calls, one per principal, released on every outcome: nothing a
  caller does (deny, cancel, time out, leave) can wedge it half-open;
* accepting a connection never consumes a probe.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from guard.limits import BreakerState, CircuitBreaker, Outcome, Ticket
from tests.auth.helpers import FrozenClock


def breaker(threshold: int = 5, reset: float = 30.0) -> tuple[CircuitBreaker, FrozenClock]:
    clock = FrozenClock(1000.0)
    return CircuitBreaker(threshold, reset, clock=clock), clock


def fail(b: CircuitBreaker, principal: str, times: int = 1) -> None:
    for _ in range(times):
        ticket = b.admit(principal)
        if ticket is not None:
            b.release(ticket, Outcome.FAILURE)


def opened(threshold: int = 2, reset: float = 30.0) -> tuple[CircuitBreaker, FrozenClock]:
    b, clock = breaker(threshold, reset)
    fail(b, "alice", threshold)
    fail(b, "bob")
    assert b.state is BreakerState.OPEN
    return b, clock


def half_open() -> tuple[CircuitBreaker, FrozenClock]:
    b, clock = opened()
    clock.advance(30)
    assert b.accepts_connections() and b.state is BreakerState.HALF_OPEN
    return b, clock


def test_one_principal_cannot_open_the_breaker_whatever_it_does() -> None:
    b, _ = breaker(threshold=5)
    fail(b, "mallory", 1000)
    for _ in range(50):
        b.failure("mallory")  # session deaths, connect failures
    assert b.state is BreakerState.CLOSED and b.accepts_connections()
    assert b.admit("alice") is not None


def test_failures_from_two_principals_open_it() -> None:
    b, _ = breaker(threshold=5)
    fail(b, "mallory", 100)
    assert b.state is BreakerState.CLOSED
    fail(b, "alice")
    assert b.state is BreakerState.OPEN
    assert b.admit("alice") is None and not b.accepts_connections()


def test_threshold_one_still_needs_two_principals() -> None:
    b, _ = breaker(threshold=1)
    fail(b, "mallory", 10)
    assert b.state is BreakerState.CLOSED
    fail(b, "alice")
    assert b.state is BreakerState.OPEN


def test_any_success_resets_the_count() -> None:
    b, _ = breaker(threshold=3)
    fail(b, "alice", 2)
    ticket = b.admit("bob")
    assert ticket is not None
    b.release(ticket, Outcome.SUCCESS)
    fail(b, "carol")
    assert b.state is BreakerState.CLOSED and b.failures == 1


def test_handshakes_never_consume_the_probe() -> None:
    b, _ = half_open()
    for _ in range(10):
        assert b.accepts_connections()
    ticket = b.admit("alice")
    assert ticket is not None and ticket.probe


def test_one_probe_per_principal_and_the_first_answer_closes_it() -> None:
    b, _ = half_open()
    mallory = b.admit("mallory")
    assert mallory is not None and mallory.probe
    assert b.admit("mallory") is None  # mallory holds its probe: only mallory waits
    alice = b.admit("alice")
    assert alice is not None and alice.probe
    b.release(alice, Outcome.SUCCESS)
    assert b.state is BreakerState.CLOSED
    b.release(mallory, Outcome.NEUTRAL)  # a release after the breaker closed is harmless
    assert b.state is BreakerState.CLOSED


def test_breaker_probe_released_after_denied_call() -> None:
    for outcome in (Outcome.NEUTRAL, Outcome.FAILURE):  # denied/cancelled/ended, or timed out
        b, _ = half_open()
        ticket = b.admit("alice")
        assert ticket is not None
        b.release(ticket, outcome)
        again = b.admit("alice")
        assert again is not None and again.probe, outcome
        b.release(again, Outcome.SUCCESS)
        assert b.state is BreakerState.CLOSED


def test_one_principal_failing_its_probes_cannot_keep_it_open() -> None:
    b, _ = half_open()
    fail(b, "mallory", 20)
    assert b.state is BreakerState.HALF_OPEN
    ticket = b.admit("alice")
    assert ticket is not None
    b.release(ticket, Outcome.SUCCESS)
    assert b.state is BreakerState.CLOSED


def test_probes_failing_for_two_principals_reopen_it() -> None:
    b, clock = half_open()
    fail(b, "alice", 2)
    fail(b, "bob")
    assert b.state is BreakerState.OPEN and not b.accepts_connections()
    clock.advance(29)
    assert b.admit("carol") is None
    clock.advance(1)
    assert b.admit("carol") is not None


def test_long_lived_calls_cannot_be_the_probe() -> None:
    b, _ = half_open()
    assert b.admit("alice", probe_ok=False) is None
    assert b.admit("alice") is not None


def test_releasing_a_ticket_twice_counts_once() -> None:
    b, _ = breaker(threshold=3)
    ticket = b.admit("alice")
    assert ticket is not None
    b.release(ticket, Outcome.FAILURE)
    b.release(ticket, Outcome.FAILURE)
    fail(b, "bob")
    assert b.state is BreakerState.CLOSED  # alice 1 + bob 1: counted twice, alice would have opened it
    fail(b, "bob")
    assert b.state is BreakerState.OPEN


def test_disabled_breaker_admits_everything() -> None:
    b, _ = breaker(threshold=0)
    fail(b, "alice", 10)
    fail(b, "bob", 10)
    assert b.state is BreakerState.CLOSED and b.admit("carol") is not None


ops = st.lists(st.tuples(st.sampled_from(["admit", "release", "failure", "advance", "connect"]),
                         st.sampled_from(list(Outcome)), st.integers(0, 40)), max_size=80)


@given(ops)
def test_one_principal_never_opens_it_and_nothing_wedges_it(steps: list[tuple[str, Outcome, int]]) -> None:
    b, clock = breaker(threshold=3, reset=10.0)
    held: list[Ticket] = []
    for op, outcome, n in steps:
        if op == "admit":
            ticket = b.admit("mallory", probe_ok=n % 2 == 0)
            if ticket is not None:
                held.append(ticket)
        elif op == "release" and held:
            b.release(held.pop(n % len(held)), outcome)
        elif op == "failure":
            b.failure("mallory")
        elif op == "advance":
            clock.advance(n)
        else:
            b.accepts_connections()
        assert b.state is BreakerState.CLOSED
    for ticket in held:  # every outcome releases: afterwards anyone may call
        b.release(ticket, Outcome.NEUTRAL)
    assert b.admit("alice") is not None


@given(st.lists(st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.sampled_from(list(Outcome))),
                max_size=60))
def test_after_every_ticket_is_released_a_call_is_admitted_once_the_reset_passes(
        calls: list[tuple[str, Outcome]]) -> None:
    b, clock = breaker(threshold=2, reset=5.0)
    for principal, outcome in calls:
        ticket = b.admit(principal)
        if ticket is not None:
            b.release(ticket, outcome)
    clock.advance(5.0)
    assert b.accepts_connections()
    ticket = b.admit("dave")
    assert ticket is not None
    b.release(ticket, Outcome.SUCCESS)
    assert b.state is BreakerState.CLOSED

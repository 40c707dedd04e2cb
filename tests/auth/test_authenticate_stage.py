"""Token expiry mid-session: the authenticate stage with a frozen clock."""

from __future__ import annotations

import pytest

from guard.auth import AuthSettings
from guard.context import ANONYMOUS, Direction, MessageContext, Principal, SessionInfo
from guard.jsonrpc import ErrorCode, Kind, Message, notification, request
from guard.pipeline import Pipeline, Stage
from guard.pipeline.authenticate import AuthenticateStage, expiry_deadline
from tests.auth.helpers import FrozenClock

EXP = 1_700_000_600.0


def context(principal: Principal, message: Message, direction: Direction = Direction.CLIENT_TO_SERVER,
            ) -> MessageContext:
    session = SessionInfo(id="s1", server="demo", client_addr="127.0.0.1:1", principal=principal)
    return MessageContext(session=session, direction=direction, message=message, method=message.method)


ALICE = Principal(subject="alice", expires_at=EXP)
CALL = request(7, "tools/call", {"name": "x", "arguments": {}})


def test_stage_satisfies_the_stage_protocol() -> None:
    stage = AuthenticateStage()
    assert isinstance(stage, Stage)
    assert (stage.name, stage.sees_rejections) == ("authenticate", False)


@pytest.mark.parametrize("offset", [-3600, -1, 29])
async def test_message_before_exp_plus_leeway_is_forwarded(offset: float) -> None:
    stage = AuthenticateStage(leeway=30, clock=FrozenClock(EXP + offset))
    assert not (await stage.process(context(ALICE, CALL))).rejected


@pytest.mark.parametrize("offset", [30, 31, 86400])
async def test_request_after_exp_plus_leeway_is_rejected_and_the_connection_closed(offset: float) -> None:
    stage = AuthenticateStage(leeway=30, clock=FrozenClock(EXP + offset))
    verdict = await stage.process(context(ALICE, CALL))
    assert verdict.rejected
    assert verdict.code == ErrorCode.UNAUTHENTICATED
    assert verdict.data == {"reason": "expired"}
    assert verdict.close is not None and (verdict.close.code, verdict.close.reason) == (1008, "token expired")


async def test_notification_after_expiry_is_dropped_and_the_connection_closed() -> None:
    stage = AuthenticateStage(leeway=0, clock=FrozenClock(EXP))
    verdict = await stage.process(context(ALICE, notification("notifications/progress", {"progress": 1})))
    assert verdict.rejected and verdict.close is not None and verdict.close.code == 1008


async def test_upstream_message_after_expiry_is_not_delivered_either() -> None:
    stage = AuthenticateStage(leeway=0, clock=FrozenClock(EXP + 1))
    result = Message(Kind.RESULT, {"jsonrpc": "2.0", "id": 7, "result": {"content": []}})
    verdict = await stage.process(context(ALICE, result, Direction.SERVER_TO_CLIENT))
    assert verdict.rejected and verdict.close is not None


async def test_clock_moving_during_a_session_flips_the_verdict() -> None:
    clock = FrozenClock(EXP - 10)
    stage = AuthenticateStage.from_settings(AuthSettings(leeway=5), clock=clock)
    pipeline = Pipeline([stage])
    assert not (await pipeline.run(context(ALICE, CALL))).rejected
    clock.advance(15)
    verdict = await pipeline.run(context(ALICE, CALL))
    assert verdict.rejected and verdict.stage == "authenticate"


async def test_anonymous_and_non_expiring_principals_are_not_affected() -> None:
    stage = AuthenticateStage(clock=FrozenClock(10**12))
    assert not (await stage.process(context(ANONYMOUS, CALL))).rejected
    assert not (await stage.process(context(Principal(subject="svc"), CALL))).rejected


def test_expiry_deadline_for_proactive_close() -> None:
    assert expiry_deadline(ALICE, 30) == EXP + 30
    assert expiry_deadline(ANONYMOUS, 30) is None

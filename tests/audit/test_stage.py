"""AuditStage in a real Pipeline: every outcome recorded, denials durable, fail closed on sink failure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from guard.audit import reader
from guard.audit.verify import verify
from guard.context import PROCEED, Event, EventKind, MessageContext, Verdict
from guard.jsonrpc import ErrorCode
from guard.pipeline import Pipeline
from guard.pipeline.audit import AuditStage
from tests.audit.helpers import KEY, PII_VALUE, TOKEN_VALUE, Clock, call_ctx, ids, make_log, result_ctx
from tests.audit.test_log import file_size_limit, wait_for


class Authorize:
    """A stand-in authorize stage: denies tools named ``secret``."""

    name = "authorize"
    sees_rejections = False

    async def process(self, ctx: MessageContext) -> Verdict:
        if ctx.target == "secret":
            return Verdict.reject(ErrorCode.POLICY_DENIED, "Denied by policy", data={"reason": "policy_denied"})
        return PROCEED


def call_ctx_record() -> dict[str, Any]:
    from guard.audit import schema

    return schema.message_record(call_ctx("probe"), now=0.0, perf=0.0, event_id="probe")


def stage_for(directory: Path, **kwargs: Any) -> AuditStage:
    clock = Clock()
    new_id = ids()
    return AuditStage(make_log(directory, clock, retry_interval=0.02, new_id=new_id), now=clock,
                      perf=lambda: 10.5, new_id=new_id, **kwargs)


def records(directory: Path) -> list[dict[str, Any]]:
    return [r for r in reader.records([directory]) if not r["event"]["action"].startswith("audit-")]


async def test_denial_is_on_disk_before_the_pipeline_returns(tmp_path: Path) -> None:
    stage = stage_for(tmp_path)
    await stage.start()
    pipeline = Pipeline([Authorize(), stage])
    ctx = call_ctx("secret")
    ctx.decision = None
    ctx.verdict = PROCEED
    verdict = await pipeline.run(ctx)
    assert verdict.rejected and verdict.stage == "authorize"
    written = (tmp_path / "audit.jsonl").read_bytes()  # no flush: the denial must already be there
    denial = [orjson.loads(line) for line in written.splitlines() if b'"denied"' in line]
    assert len(denial) == 1 and denial[0]["guard"]["verdict"]["stage"] == "authorize"
    await pipeline.aclose()


async def test_every_outcome_is_recorded_and_the_log_verifies(tmp_path: Path) -> None:
    stage = stage_for(tmp_path)
    pipeline = Pipeline([Authorize(), stage])
    lookup = call_ctx("lookup")
    await pipeline.run(lookup)
    await pipeline.run(call_ctx("secret"))
    await pipeline.run(result_ctx(request=lookup.request))  # the outcome of the lookup call
    await pipeline.emit(Event(EventKind.AUTH_FAILURE, server="crm", client_addr="10.0.0.9:4000",
                              reason="token_expired", details={"token": TOKEN_VALUE}))
    await pipeline.aclose()
    recs = records(tmp_path)
    assert [(r["event"]["action"], r["event"]["outcome"]) for r in recs] == [
        ("tools/call", "success"), ("tools/call", "failure"), ("tools/call", "success"),
        ("auth_failure", "failure")]
    assert recs[2]["guard"]["pii"]["entity_types"] == ["EMAIL_ADDRESS", "PERSON"]
    assert recs[2]["event"]["duration"] == 500_000_000
    assert "audit" in recs[1]["guard"]["timings_us"] or "authorize" in recs[1]["guard"]["timings_us"]
    data = b"".join(p.read_bytes() for p in tmp_path.glob("*.jsonl"))
    assert PII_VALUE.encode() not in data and TOKEN_VALUE.encode() not in data
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"


async def test_sink_failure_fails_closed_and_the_rejection_is_recorded_later(tmp_path: Path) -> None:
    stage = stage_for(tmp_path)
    await stage.start()
    pipeline = Pipeline([Authorize(), stage])
    with file_size_limit(64):
        first = await pipeline.run(call_ctx("secret"))  # durable write fails: the denial still stands
        assert first.rejected and first.code == ErrorCode.POLICY_DENIED
        verdict = await pipeline.run(call_ctx("lookup", rid=2))
        assert verdict.rejected and verdict.code == ErrorCode.AUDIT_UNAVAILABLE
        assert verdict.data == {"reason": "audit_unavailable"} and verdict.stage == "audit"
        await asyncio.sleep(0.05)
        again = await pipeline.run(call_ctx("lookup", rid=3))
        assert again.code == ErrorCode.AUDIT_UNAVAILABLE
    await wait_for(lambda: stage.log.healthy)
    last = call_ctx("lookup", rid=4)
    after = await pipeline.run(last)
    assert not after.rejected
    await pipeline.emit(Event(EventKind.CLOSE, server="crm", session=last.session, code=1000))  # ends call 4
    await pipeline.aclose()
    recs = [r for r in records(tmp_path) if "rpc" in r["guard"]]
    codes = [(r["guard"]["rpc"]["id"], r["guard"]["verdict"].get("code")) for r in recs]
    assert codes == [("1", -31001), ("2", -31008), ("3", -31008), ("4", None)]
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"


async def test_fail_open_lets_messages_through_and_marks_them(tmp_path: Path) -> None:
    stage = stage_for(tmp_path, on_failure="open")
    await stage.start()
    with file_size_limit(64):
        await stage.log.append(call_ctx_record(), durable=False)
        await asyncio.sleep(0.05)
        ctx = call_ctx("lookup")
        verdict = await stage.process(ctx)
        assert not verdict.rejected and ctx.fail_open == ["audit"]
    await wait_for(lambda: stage.log.healthy)
    await stage.aclose()
    recs = [r for r in records(tmp_path) if r.get("guard", {}).get("rpc")]
    assert recs[-1]["guard"]["fail_open"] == ["audit"]


async def test_events_while_failing_are_held_not_lost(tmp_path: Path) -> None:
    stage = stage_for(tmp_path)
    await stage.start()
    with file_size_limit(64):
        await stage.on_event(Event(EventKind.AUTH_FAILURE, server="crm", client_addr="10.0.0.1:1",
                                   reason="bad_signature"))
        await stage.on_event(Event(EventKind.CONNECT, server="crm", client_addr="10.0.0.1:2"))
    await wait_for(lambda: stage.log.healthy)
    await stage.aclose()
    assert [r["event"]["action"] for r in records(tmp_path)] == ["auth_failure", "connect"]


async def test_log_that_cannot_start_fails_closed_then_writes_what_it_held(tmp_path: Path) -> None:
    """The log path is unusable (a directory sits there): messages are refused until it can start."""
    (tmp_path / "audit.jsonl").mkdir()
    stage = stage_for(tmp_path)
    verdict = await stage.process(call_ctx("lookup"))
    assert verdict.rejected and verdict.code == ErrorCode.AUDIT_UNAVAILABLE
    (tmp_path / "audit.jsonl").rmdir()
    clock = stage.log._mono
    assert isinstance(clock, Clock)
    clock.advance(1.0)  # the retry interval has passed
    assert not (await stage.process(call_ctx("lookup", rid=2))).rejected
    await stage.aclose()
    assert [(r["guard"]["rpc"]["id"], r["guard"]["verdict"].get("code")) for r in records(tmp_path)] == [
        ("1", -31008), ("2", None)]
    result = verify([tmp_path], keys=[KEY.public])
    assert result.status == "in_flight" and result.in_flight == 1  # call 2 never got an outcome here

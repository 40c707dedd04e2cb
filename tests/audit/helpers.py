"""Fixed keys, frozen clocks and context builders for the audit tests."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from guard.audit.log import AuditLog
from guard.audit.sink import FileSink, SinkConfig
from guard.context import (
    Decision,
    Direction,
    Finding,
    MessageContext,
    Principal,
    RequestRecord,
    SessionInfo,
    Verdict,
)
from guard.crypto.signing import SigningKey, signing_key_from_seed
from guard.jsonrpc import ErrorCode, Kind, Message, request

KEY = signing_key_from_seed(bytes(range(32)))
OTHER_KEY = signing_key_from_seed(bytes(range(1, 33)))
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z

PII_VALUE = "jane.doe@example.com"
TOKEN_VALUE = "eyJhbGciOiJFUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"


class Clock:
    """A frozen clock that moves only when told (wall and monotonic in one)."""

    def __init__(self, start: float = START) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"evt-{next(counter):06d}"


def sink_config(directory: Path, **overrides: Any) -> SinkConfig:
    values: dict[str, Any] = {
        "path": directory / "audit.jsonl", "key": KEY, "fsync": "off",
        "checkpoint_every": 1000, "checkpoint_interval": 60.0, "rotate_bytes": 0, "rotate_interval": 0.0,
    }
    values.update(overrides)
    return SinkConfig(**values)


def make_log(directory: Path, clock: Clock | None = None, *, key: SigningKey = KEY, queue_size: int = 1000,
             retry_interval: float = 0.05, new_id: Any = None, **overrides: Any) -> AuditLog:
    clock = clock or Clock()
    new_id = new_id or ids()
    sink = FileSink(sink_config(directory, key=key, **overrides), now=clock, monotonic=clock, new_id=new_id)
    return AuditLog(sink, queue_size=queue_size, retry_interval=retry_interval, now=clock, monotonic=clock,
                    new_id=new_id)


def session(subject: str = "alice", roles: tuple[str, ...] = ("analyst",)) -> SessionInfo:
    return SessionInfo(
        id="sess-1", server="crm", client_addr="127.0.0.1:50123",
        principal=Principal(subject=subject, roles=roles, issuer="https://idp.example", tenant="acme",
                            expires_at=START + 3600, key_id="kid-1"),
        started_at=START,
    )


def call_ctx(tool: str = "lookup", *, allowed: bool = True, subject: str = "alice", rid: int = 1,
             arguments: dict[str, Any] | None = None) -> MessageContext:
    """A c2s tools/call context after authorize (denied contexts carry the reject verdict)."""
    message = request(rid, "tools/call", {"name": tool, "arguments": arguments or {"q": PII_VALUE}})
    ctx = MessageContext(session=session(subject), direction=Direction.CLIENT_TO_SERVER, message=message,
                         method="tools/call", target=tool, received_at=10.0,
                         request=RequestRecord(rid, "tools/call", tool, Direction.CLIENT_TO_SERVER, 10.0,
                                               {"name": tool}, upstream_id=rid + 1))
    ctx.decision = Decision(allowed, "policy_allow" if allowed else "policy_deny",
                            "p, analyst, crm, lookup" if allowed else None)
    if not allowed:
        ctx.verdict = Verdict.reject(ErrorCode.POLICY_DENIED, "Denied by policy",
                                     data={"reason": "policy_denied"}, stage="authorize")
    return ctx


def result_ctx(tool: str = "lookup", *, findings: list[Finding] | None = None, outcome: str = "ok",
               started: float = 10.0, request: RequestRecord | None = None) -> MessageContext:
    """A s2c result for a tools/call whose text carried PII (already redacted by the pii stage)."""
    payload = {"jsonrpc": "2.0", "id": 1,
               "result": {"content": [{"type": "text", "text": "[REDACTED]"}], "isError": outcome == "is_error"}}
    raw = f'{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{PII_VALUE}"}}]}}}}'
    ctx = MessageContext(session=session(), direction=Direction.SERVER_TO_CLIENT,
                         message=Message(Kind.RESULT, payload, len(raw)), method="tools/call", target=tool,
                         request=request or RequestRecord(1, "tools/call", tool, Direction.CLIENT_TO_SERVER, started,
                                                          {"name": tool, "arguments": {"q": PII_VALUE}}))
    ctx.findings = findings if findings is not None else [
        Finding("EMAIL_ADDRESS", "$.result.content[0].text", "redact", 0.95),
        Finding("EMAIL_ADDRESS", "$.result.content[0].text", "redact", 0.9),
        Finding("PERSON", "$.result.structuredContent.name", "mask", 0.85),
    ]
    ctx.upstream_outcome = outcome
    return ctx


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


async def sample_log(directory: Path, *, hours: int = 6, policy_changes: bool = False) -> Clock:
    """A realistic closed log: several subjects and tools, denials, PII findings, auth failures.

    ``policy_changes``: also two policy reloads (one applied, one rejected) along the way.
    """
    from guard.context import Event, EventKind
    from guard.pipeline.audit import AuditStage

    clock = Clock()
    new_id = ids()
    stage = AuditStage(make_log(directory, clock, checkpoint_every=50, new_id=new_id), now=clock,
                       perf=lambda: 10.2, new_id=new_id)
    subjects = ["alice", "bob", "carol", "dave"]
    tools = ["lookup", "export_all", "send_mail", "search"]
    for i in range(hours * 12):
        subject = subjects[i % len(subjects)]
        tool = tools[(i // len(subjects)) % len(tools)]
        denied = tool == "export_all" and subject != "alice"
        call = call_ctx(tool, allowed=not denied, subject=subject, rid=i)
        await stage.process(call)
        if not denied:
            findings: list[Finding] | None = [] if i % 3 else None
            await stage.process(result_ctx(tool, findings=findings, request=call.request))
        if i % 17 == 0:
            await stage.on_event(Event(EventKind.AUTH_FAILURE, server="crm", client_addr="10.1.2.3:5000",
                                       reason="token_expired", at=clock()))
        if policy_changes and i in (5, 9):
            before, after = ("a" * 64, "b" * 64) if i == 5 else ("b" * 64, "c" * 64)
            ok = i == 5
            await stage.on_event(Event(EventKind.POLICY_RELOAD, at=clock(), details={
                "ok": ok, "digests": {"policy.csv": f"sha256:{after if ok else before}"},
                "previous_digests": {"policy.csv": f"sha256:{before}"}, "rules": 12,
                "error": None if ok else "policy.csv line 4: unknown effect 'alow'"}))
        clock.advance(300)
    await stage.aclose()
    return clock

"""The audit stage: one tamper-evident record per message outcome and per connection event.

Runs last in both directions and with ``sees_rejections = True``, so it records every
outcome, including rejections by earlier stages (``ctx.verdict``). A rejection's
record is *durable* before the stage returns: the relay sends the denial only after
the record reached the OS (and fsync per ``audit.fsync``). So is an allowed client
request's record (write-ahead, issue 15): the relay forwards the request only after its
record is in the log file (``fsync`` per ``audit.durability``), so a call the upstream
executed is never missing from the log, even if guard is killed a moment later; the
record says ``guard.write_ahead`` and the outcome's record refers to it
(``guard.request.event_id``). Other records are queued and written by the log's writer
within a bounded delay.

If the audit log cannot write (disk full, file gone), the stage fails closed by
default (``audit.on_failure = "close"``): messages are rejected with -31008
(``AUDIT_UNAVAILABLE``) and their records are held in memory (bounded) until the
sink recovers. ``on_failure = "open"`` lets messages through, marks them
``fail_open: ["audit"]`` and holds records the same way. Either way a record that
cannot be held is counted and reported, never dropped silently.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from guard.audit import schema
from guard.audit.log import AuditLog, AuditNotPersisted
from guard.audit.schema import Clock, IdFactory
from guard.audit.settings import AuditSettings, Durability, FailurePolicy
from guard.context import PROCEED, Direction, Event, EventKind, MessageContext, Verdict
from guard.errors import AuditError
from guard.jsonrpc import ErrorCode, Kind

log = logging.getLogger("guard.audit")

UNAVAILABLE_MESSAGE = "Audit unavailable"
UNAVAILABLE_REASON = "audit_unavailable"


class AuditStage:
    """Pipeline stage ``audit`` (see module docstring)."""

    name = "audit"
    sees_rejections = True

    def __init__(
        self,
        audit_log: AuditLog,
        *,
        on_failure: FailurePolicy = "close",
        durability: Durability = "always",
        group_commit: float = 0.002,
        now: Clock = time.time,
        perf: Clock = time.perf_counter,
        new_id: IdFactory = schema.new_event_id,
    ) -> None:
        self.log = audit_log
        self.on_failure = on_failure
        self.durability = durability
        self._sync_ahead = durability != "off"
        self._group = group_commit if durability == "group" else 0.0
        self._now = now
        self._perf = perf
        self._new_id = new_id

    @classmethod
    def from_settings(cls, settings: AuditSettings) -> AuditStage:
        """Build the stage and its log from ``[audit]`` (raises ConfigError for a missing/bad key).

        Call ``await stage.start()`` at startup so an unusable log path stops guard from
        starting (otherwise the log opens lazily and messages fail closed until it can).
        """
        return cls(AuditLog.from_settings(settings), on_failure=settings.on_failure,
                   durability=settings.durability, group_commit=settings.group_commit_ms / 1000)

    async def start(self) -> None:
        """Open the log now (fail fast at startup instead of at the first message)."""
        await self.log.start()

    async def process(self, ctx: MessageContext) -> Verdict:
        record = schema.message_record(ctx, now=self._now(), perf=self._perf(), event_id=self._new_id())
        rejected = ctx.verdict.rejected
        try:
            if not rejected and ctx.direction is Direction.CLIENT_TO_SERVER and ctx.message.kind is Kind.REQUEST:
                record["guard"]["write_ahead"] = self.durability
                if ctx.request is not None:
                    ctx.request.audit_id = record["event"]["id"]
                await self.log.append(record, durable=True, fsync=self._sync_ahead, group=self._group)
            else:
                await self.log.append(record, durable=rejected)
        except AuditNotPersisted:
            return self._unavailable(ctx, None)
        except AuditError:
            return self._unavailable(ctx, record)
        return PROCEED

    def _unavailable(self, ctx: MessageContext, record: dict[str, Any] | None) -> Verdict:
        """The log could not take the record: hold it, then fail closed (or open, if configured).

        ``record`` is ``None`` when the log already holds it (a durable write that failed).
        """
        if ctx.verdict.rejected:
            # Already a rejection: it stands (the caller learns the real reason); only the record waits.
            if record is not None:
                self.log.keep(record)
            return PROCEED
        if self.on_failure == "open":
            ctx.fail_open.append(self.name)
            if record is not None:
                record["guard"]["fail_open"] = list(ctx.fail_open)
                self.log.keep(record)
            return PROCEED
        verdict = Verdict.reject(
            ErrorCode.AUDIT_UNAVAILABLE, UNAVAILABLE_MESSAGE, data={"reason": UNAVAILABLE_REASON},
            stage=self.name,
        )
        if record is not None:
            ctx.verdict = verdict
            self.log.keep(schema.message_record(ctx, now=self._now(), perf=self._perf(),
                                                event_id=record["event"]["id"]))
        return verdict

    async def on_event(self, event: Event) -> None:
        """Record a connection-level event; an auth failure's record is durable like a denial."""
        record = schema.event_record(event, event_id=self._new_id())
        try:
            await self.log.append(record, durable=event.kind is EventKind.AUTH_FAILURE)
        except AuditNotPersisted:
            pass
        except AuditError:
            self.log.keep(record)

    async def aclose(self) -> None:
        """Flush everything, write the shutdown seal (stop record + checkpoint)."""
        await self.log.aclose()

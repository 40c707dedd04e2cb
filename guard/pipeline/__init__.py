"""The ordered stage chain every message passes through.

::

    client -> [authenticate] -> authorize -> pii -> audit -> upstream
    upstream -> authorize/filter -> pii -> audit -> client

This module is the one place that orders and runs stages (compare starlette's
``build_middleware_stack``). A stage implements :class:`Stage`: it reads the
:class:`~guard.context.MessageContext` and returns a :class:`~guard.context.Verdict`.
Stages with ``sees_rejections = True`` (audit) run even after an earlier stage
rejected, so every outcome is recorded; they may still turn a pass into a reject
(an audit sink that cannot write fails closed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from guard.context import PROCEED, Action, Event, MessageContext, Verdict
from guard.tracing.base import NO_TRACE


@runtime_checkable
class Stage(Protocol):
    """One step of the pipeline."""

    name: str
    sees_rejections: bool

    async def process(self, ctx: MessageContext) -> Verdict:
        """Decide about ``ctx.message``; ``ctx.verdict`` holds the verdict so far."""
        ...


@runtime_checkable
class EventObserver(Protocol):
    """A stage that also wants connection-level events (connect, auth failure, close)."""

    async def on_event(self, event: Event) -> None: ...


class Pipeline:
    """Runs stages in order and returns the final verdict for a message."""

    def __init__(self, stages: Sequence[Stage] = ()) -> None:
        self._stages = tuple(stages)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self._stages

    async def run(self, ctx: MessageContext) -> Verdict:
        """Pass ``ctx`` through every stage; a rewrite replaces ``ctx.message`` for later stages."""
        # Runs for every message: locals instead of repeated attribute and property look-ups.
        clock = time.perf_counter
        timings = ctx.timings
        trace = ctx.trace
        traced = trace is not NO_TRACE
        for stage in self._stages:
            if ctx.verdict.action is Action.REJECT and not stage.sees_rejections:
                continue
            started = clock()
            verdict = await stage.process(ctx)
            ended = clock()
            timings[stage.name] = ended - started
            if traced:
                trace.stage(stage.name, ctx, started, ended, verdict)
            if verdict is PROCEED:
                continue
            if verdict.action is Action.REJECT:
                if verdict.stage is None:
                    verdict = Verdict.reject(
                        verdict.code, verdict.error_message, verdict.data, verdict.close, stage.name
                    )
                ctx.verdict = verdict
            elif verdict.message is not None:
                ctx.message = verdict.message
        return ctx.verdict

    async def emit(self, event: Event) -> None:
        """Deliver a connection-level event to every stage that observes events."""
        for stage in self._stages:
            if isinstance(stage, EventObserver):
                await stage.on_event(event)

    async def aclose(self) -> None:
        """Give stages a chance to flush (audit) at shutdown."""
        for stage in self._stages:
            closer = getattr(stage, "aclose", None)
            if closer is not None:
                await closer()

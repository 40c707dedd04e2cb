"""The stage chain: runs every stage of the pipeline over one message, in order.

Runs for every message in both directions, so it is compiled with mypyc (``setup.py``); the
ordering rules are in :mod:`guard.pipeline`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from guard.context import PROCEED, Action, Event, MessageContext, Verdict
from guard.pipeline.stage import EventObserver, Stage
from guard.tracing.base import NO_TRACE


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

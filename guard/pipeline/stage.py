"""What a pipeline stage is: the protocols :class:`~guard.pipeline.chain.Pipeline` runs.

Kept apart from the chain because ``runtime_checkable`` protocols cannot be compiled with
mypyc, while the chain, which runs for every message, is (``setup.py``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from guard.context import Event, MessageContext, Verdict


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

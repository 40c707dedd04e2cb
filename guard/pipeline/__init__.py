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

from guard.pipeline.chain import Pipeline
from guard.pipeline.stage import EventObserver, Stage

__all__ = ["EventObserver", "Pipeline", "Stage"]

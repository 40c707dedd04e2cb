"""The tracing interface the relay and the pipeline call, and its do-nothing form. No I/O.

:class:`MessageTrace` and :class:`Tracer` as defined here record nothing: they are what
every message gets while tracing is off (:data:`NO_TRACE`, :data:`NO_TRACER`). The
OpenTelemetry implementation (:mod:`guard.tracing.otel`) subclasses them. Nothing here
imports OpenTelemetry.

Upstream transports learn the ``traceparent`` to send from :func:`upstream_headers`, a
context variable the relay sets around the send of a request (:meth:`MessageTrace.propagating`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guard.context import MessageContext, SessionInfo, Verdict
    from guard.jsonrpc import Message

_NONE: Mapping[str, str] = MappingProxyType({})
_UPSTREAM_HEADERS: ContextVar[Mapping[str, str]] = ContextVar("guard_trace_headers", default=_NONE)


def upstream_headers() -> Mapping[str, str]:
    """The trace context headers (``traceparent``, ``tracestate``) for the request being sent now.

    Empty unless tracing is on and the relay is sending a request upstream. Read by transports
    that carry HTTP headers (Streamable HTTP) while they build the request's headers.
    """
    return _UPSTREAM_HEADERS.get()


class MessageTrace:
    """The trace of one client message. This base class records nothing (tracing off)."""

    __slots__ = ()

    def stage(self, name: str, ctx: MessageContext, started: float, ended: float, verdict: Verdict) -> None:
        """A pipeline stage ran on ``ctx`` from ``started`` to ``ended`` (``time.perf_counter``)."""

    def upstream_start(self, message: Message) -> Message:
        """The request leaves for the upstream now; returns it as it should be sent.

        A request whose ``params._meta`` carries a ``traceparent`` is sent with guard's
        ``upstream`` span in its place (W3C Trace Context: a participant replaces the parent-id).
        """
        return message

    @contextlib.contextmanager
    def propagating(self) -> Iterator[None]:
        """While inside, :func:`upstream_headers` returns this request's ``traceparent``."""
        yield

    def upstream_end(self, outcome: str) -> None:
        """The upstream answered (``ok``, ``error:<code>``, ``is_error``) or guard gave up (a reason)."""

    def finish(self, outcome: str, ctx: MessageContext | None = None) -> None:
        """The message's handling is over: the client got its answer, or the message went on/was dropped.

        Idempotent: only the first call counts.
        """


class Tracer:
    """Starts one :class:`MessageTrace` per client message. This base class is tracing off."""

    enabled = False

    def start(self, session: SessionInfo, message: Message) -> MessageTrace:
        """The trace of a client message that just arrived (parsed, not yet judged)."""
        return NO_TRACE

    async def aclose(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop the exporter."""


NO_TRACE = MessageTrace()
"""The trace of every message while tracing is off."""
NO_TRACER = Tracer()
"""The tracer while tracing is off."""


def set_upstream_headers(headers: Mapping[str, str]) -> Token[Mapping[str, str]]:
    """Set what :func:`upstream_headers` returns; returns the token :func:`reset_upstream_headers` needs."""
    return _UPSTREAM_HEADERS.set(headers)


def reset_upstream_headers(token: Token[Mapping[str, str]]) -> None:
    _UPSTREAM_HEADERS.reset(token)

"""Typed per-session and per-message state carried through the pipeline. No I/O.

One :class:`MessageContext` is built for every message in either direction. Stages
read it and fill in their part (``decision``, ``findings``, ``timings``); nothing is
passed around in string-keyed dicts.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from guard.jsonrpc import Message
from guard.tracing.base import NO_TRACE, MessageTrace


class Direction(enum.Enum):
    """Which way a message travels through guard."""

    __hash__ = object.__hash__
    """Members are singletons: hash by identity in C (``Enum.__hash__`` is Python code, run per lookup)."""

    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is behind a connection, as established at the handshake.

    Never holds the raw token. ``expires_at`` is the token's ``exp`` (epoch seconds)
    plus nothing: the authenticate stage applies leeway itself.
    """

    subject: str
    roles: tuple[str, ...] = ()
    issuer: str | None = None
    tenant: str | None = None
    expires_at: float | None = None
    anonymous: bool = False
    client_cert_subject: str | None = None
    key_id: str | None = None
    namespace: str | None = None
    """The issuer's alias (``[[auth.issuers]] alias``): the policy names this principal
    ``user:<namespace>/<subject>`` and its roles ``role:<namespace>/<role>``."""


ANONYMOUS = Principal(subject="anonymous", anonymous=True)


@dataclass(slots=True)
class SessionInfo:
    """Facts about one client connection, shared by all its messages."""

    id: str
    server: str
    client_addr: str
    principal: Principal = ANONYMOUS
    started_at: float = field(default_factory=time.time)
    protocol_version: str | None = None
    """Negotiated legacy-era version (from ``initialize``), if any."""


@dataclass(frozen=True, slots=True)
class Decision:
    """An authorization outcome: allowed or not, the rule that decided, a stable reason code."""

    allowed: bool
    reason: str
    rule: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One PII finding: never the value, only where, what and what was done."""

    entity_type: str
    path: str
    action: str
    score: float = 0.0


@dataclass(slots=True)
class RequestRecord:
    """What a session remembers about a request until its response arrives."""

    id: Any
    method: str
    target: str | None
    direction: Direction
    started: float
    """``time.perf_counter()`` when the request entered guard."""
    params: dict[str, Any] = field(default_factory=dict)
    """The request's params as forwarded (after any rewrite), for stages that need them."""
    upstream_id: int | None = None
    """Client requests: the id guard sends upstream in place of ``id`` (unique per session)."""
    cancelled: bool = False
    """Client requests: the client cancelled it; any answer is dropped (see :mod:`guard.session`)."""
    ticket: Any = None
    """Client requests: the circuit breaker's admission (:class:`guard.limits.Ticket`), if any."""
    trace: MessageTrace = NO_TRACE
    """Client requests: the request's trace, ended when the client gets its answer (:mod:`guard.tracing`)."""
    audit_id: str | None = None
    """Client requests: ``event.id`` of the request's write-ahead audit record; the outcome's
    record refers to it (``guard.request.event_id``)."""


class Action(enum.Enum):
    CONTINUE = "continue"
    REJECT = "reject"

    __hash__ = object.__hash__
    """Members are singletons: hash by identity in C (``Enum.__hash__`` is Python code, run per lookup)."""


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """Ask the transport to close the client connection (WebSocket close code and reason)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a stage decided about a message.

    ``CONTINUE`` optionally carries a rewritten message; ``REJECT`` carries a JSON-RPC
    error (code, terse message, optional machine-readable data) and optionally a close.
    Rejecting a notification drops it (notifications get no response).
    """

    action: Action
    message: Message | None = None
    code: int = 0
    error_message: str = ""
    data: Any = None
    close: CloseRequest | None = None
    stage: str | None = None

    @property
    def rejected(self) -> bool:
        return self.action is Action.REJECT

    @staticmethod
    def proceed(message: Message | None = None) -> Verdict:
        return PROCEED if message is None else Verdict(Action.CONTINUE, message=message)

    @staticmethod
    def reject(
        code: int,
        error_message: str,
        data: Any = None,
        close: CloseRequest | None = None,
        stage: str | None = None,
    ) -> Verdict:
        return Verdict(Action.REJECT, code=code, error_message=error_message, data=data, close=close, stage=stage)


PROCEED = Verdict(Action.CONTINUE)


@dataclass(slots=True)
class MessageContext:
    """Everything the pipeline knows about one message.

    For responses, ``method``/``target`` are those of the request being answered and
    ``request`` is that request's record (``None`` for unsolicited responses).
    """

    session: SessionInfo
    direction: Direction
    message: Message
    method: str | None = None
    target: str | None = None
    request: RequestRecord | None = None
    received_at: float = field(default_factory=time.perf_counter)
    decision: Decision | None = None
    findings: list[Finding] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    verdict: Verdict = PROCEED
    upstream_outcome: str | None = None
    """For responses: ``ok``, ``error:<code>`` or ``is_error``; set by the relay."""
    fail_open: list[str] = field(default_factory=list)
    """Stages that let the message through after failing (operator opt-in), for audit."""
    audit_target: str | None = None
    """The target with personal data protected, set by the PII stage; audit records it
    instead of ``target`` (``None``: no PII stage ran, ``target`` is recorded as is)."""
    trace: MessageTrace = NO_TRACE
    """The client message's trace; the pipeline adds a span per stage (:mod:`guard.tracing`)."""

    @property
    def server(self) -> str:
        return self.session.server

    @property
    def principal(self) -> Principal:
        return self.session.principal


class EventKind(enum.Enum):
    CONNECT = "connect"
    AUTH_FAILURE = "auth_failure"
    CLOSE = "close"
    POLICY_RELOAD = "policy_reload"
    KEYS_LOADED = "keys_loaded"
    PROTOCOL_ERROR = "protocol_error"
    """A client frame refused before it became a message (parse error, batch, binary, oversize)."""

    __hash__ = object.__hash__
    """Members are singletons: hash by identity in C (``Enum.__hash__`` is Python code, run per lookup)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened outside any single message (connection life cycle, reloads)."""

    kind: EventKind
    server: str | None = None
    session: SessionInfo | None = None
    client_addr: str | None = None
    code: int | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

"""The one exception root of guard.

Every error guard raises on purpose derives from :class:`GuardError`::

    GuardError
    ├── ConfigError            configuration could not be loaded or is invalid
    ├── ProtocolError          a frame is not an acceptable JSON-RPC/MCP message
    │   ├── ParseError         not JSON at all (-32700)
    │   └── InvalidRequest     JSON, but not a JSON-RPC message we accept (-32600)
    ├── UpstreamError          the upstream MCP server cannot be reached or went away
    │   ├── UpstreamUnavailable   could not connect / start
    │   ├── UpstreamClosed        disconnected or exited mid-session
    │   └── UpstreamInterrupted   lost and re-established: requests in flight are lost
    ├── AuthenticationError    credentials missing or invalid
    ├── AuthorizationError     policy could not be evaluated
    ├── PIIError               PII classification or protection failed
    ├── AuditError             the audit sink cannot record
    └── SharedStateUnavailable the fleet's Redis did not answer within its deadline

Messages sent to clients are terse and uniform; the details carried by these
exceptions go to logs and audit only.
"""

from __future__ import annotations

from typing import Any


class GuardError(Exception):
    """Root of every exception guard raises deliberately."""


class ConfigError(GuardError):
    """Configuration is invalid. ``problems`` lists every error found, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ProtocolError(GuardError):
    """A frame is not an acceptable JSON-RPC message.

    ``request_id`` is the id to answer with (``None`` when it could not be determined,
    which is sent as ``"id": null`` per JSON-RPC 2.0 section 5). ``reason`` is a stable
    code for logs and audit (``invalid_unicode``, ``number_out_of_range``), ``None`` when
    the class says it all.
    """

    code: int = -32600

    def __init__(self, message: str, request_id: Any = None, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.reason = reason


class ParseError(ProtocolError):
    """The frame is not valid JSON (JSON-RPC -32700)."""

    code = -32700


class InvalidRequest(ProtocolError):
    """Valid JSON that is not a JSON-RPC 2.0 message guard accepts (JSON-RPC -32600)."""

    code = -32600


class UpstreamError(GuardError):
    """The upstream MCP server failed."""


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached or started."""


class UpstreamClosed(UpstreamError):
    """The upstream disconnected, exited or broke the protocol mid-session."""


class UpstreamInterrupted(UpstreamError):
    """The upstream connection dropped and guard reconnected; requests in flight were lost."""


class AuthenticationError(GuardError):
    """The caller's credentials are missing or invalid."""


class AuthorizationError(GuardError):
    """The policy could not be evaluated (never used for a plain deny)."""


class PIIError(GuardError):
    """PII classification or protection failed."""


class AuditError(GuardError):
    """The audit sink cannot record."""


class SharedStateUnavailable(GuardError):
    """The fleet's shared state (Redis, ``[cluster]``) did not answer within ``deadline_ms``.

    Never reaches a client: the caller applies the configured fallback (docs/operators.md, "Fleet").
    """

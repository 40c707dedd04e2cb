"""One info line per refused handshake or frame, with a reason code; never an ERROR a client can trigger.

Refusing a client is routine for a security proxy, so it must not page anyone: any anonymous
client can send a bad handshake or an invalid UTF-8 frame. Left alone, the libraries below
guard log each refusal up to twice (uvicorn's access-style line and websockets' ``connection
rejected``) without guard's reason, and an invalid UTF-8 text frame at ERROR with a traceback
(uvicorn's ``Invalid UTF-8 sequence received from client.``).

:func:`refusing` marks the refusals guard makes itself (the reason is logged by guard, once:
``refused handshake on NAME: REASON (STATUS)``); :class:`RefusalLogFilter`, installed on
uvicorn's ``uvicorn.error`` logger, drops the libraries' duplicate lines for those, rewrites
the refusals the libraries make on their own (a malformed upgrade request) into the same
shape, and turns the invalid UTF-8 error into one info line, ``refused frame: invalid_utf8
(close 1007)``. Genuine errors (an exception in guard) stay at ERROR.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

_REFUSING: contextvars.ContextVar[bool] = contextvars.ContextVar("guard_refusing", default=False)

_ACCESS_LINES = ('%s - "WebSocket %s" %d', '%s - "WebSocket %s" 403')
_LIBRARY_REFUSALS = ("connection rejected (%d %s)", "HTTP response sent (%d %s)")
_INVALID_UTF8 = "Invalid UTF-8 sequence received from client."


@contextlib.contextmanager
def refusing() -> Iterator[None]:
    """Within this block guard sends a refusal it has already logged (the same task's context)."""
    token = _REFUSING.set(True)
    try:
        yield
    finally:
        _REFUSING.reset(token)


class RefusalLogFilter(logging.Filter):
    """Filter for ``uvicorn.error``: see the module docstring."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg
        if msg in _ACCESS_LINES or msg in _LIBRARY_REFUSALS:
            if _REFUSING.get():
                return False  # guard logged this refusal with its reason already
            if msg in _ACCESS_LINES:
                return True
            status, phrase = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else (0, "")
            record.msg, record.args = "refused handshake: invalid_handshake (%d %s)", (status, phrase)
            _as_info(record)
            return True
        if msg == _INVALID_UTF8:
            record.msg, record.args = "refused frame: invalid_utf8 (close 1007)", ()
            record.exc_info, record.exc_text = None, None
            _as_info(record)
        return True


def _as_info(record: logging.LogRecord) -> None:
    record.levelno, record.levelname = logging.INFO, "INFO"


def install(logger_name: str = "uvicorn.error") -> None:
    """Attach :class:`RefusalLogFilter` to the logger the HTTP and WebSocket layers use (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RefusalLogFilter) for f in logger.filters):
        logger.addFilter(RefusalLogFilter())

"""A logging filter that removes credentials from log records before any handler sees them.

guard never logs tokens itself, but libraries do at debug level: the WebSocket
handshake (uvicorn's websockets implementation logs the request with its headers on
``uvicorn.error``), HTTP clients, request lines with a query string. Installed on the
log handler, this filter rewrites every record's message:

* ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie`` header lines
  -> value replaced by ``[redacted]``;
* ``Bearer <token>`` anywhere -> ``Bearer [redacted]``;
* ``access_token=`` / ``token=`` / ``id_token=`` query parameters -> ``[redacted]``;
* anything shaped like a compact JWS/JWT (``eyJ...``.``...``.``...``) -> ``[redacted-jwt]``.
"""

from __future__ import annotations

import logging
import re

_HEADER = re.compile(r"(?im)^(\s*[<>]?\s*(?:proxy-)?(?:authorization|cookie|set-cookie)\s*:\s*).*$")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*")
_QUERY = re.compile(r"(?i)([?&](?:access_token|id_token|token)=)[^&\s\"']*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def redact_credentials(text: str) -> str:
    """``text`` with bearer tokens, credential headers and token query parameters removed."""
    text = _HEADER.sub(r"\1[redacted]", text)
    text = _BEARER.sub(r"\1[redacted]", text)
    text = _QUERY.sub(r"\1[redacted]", text)
    return _JWT.sub("[redacted-jwt]", text)


class CredentialRedactingFilter(logging.Filter):
    """Install on a handler: ``handler.addFilter(CredentialRedactingFilter())``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler's error path
            return True
        redacted = redact_credentials(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True

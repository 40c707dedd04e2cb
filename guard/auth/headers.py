"""Handshake headers as authentication reads them: lowercased, security headers present at most once.

HTTP lets a header appear several times; most servers and frameworks then keep the first or
the last value, and they disagree. If guard read the last ``Authorization`` while a front proxy
(or an audit hook, or the upstream's own gateway) read the first, the two would see different
users. A request carrying ``Authorization`` or ``Origin`` more than once is therefore refused
before anything reads either (400; RFC 6750 section 3.1 ``invalid_request``: "uses more than one
method for including an access token"; RFC 6454 section 7.3: an ``Origin`` header is a single
value).

Every transport's authentication goes through :func:`read_headers` (it is called by
:meth:`guard.auth.Authenticator.authenticate`), so the WebSocket endpoint and any HTTP front door
refuse duplicates the same way -- provided they pass the headers as received: the ASGI
``scope["headers"]`` list or a starlette ``Headers`` object (whose ``items()`` keeps every
occurrence), not a ``dict`` that has already merged them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

SINGLE_VALUED: Final = ("authorization", "origin")
"""Headers whose repetition makes the request ambiguous about who is calling, or from where."""

HeaderSource = Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]]
"""A mapping (``items()`` is read, so starlette ``Headers`` keeps duplicates) or raw name/value pairs."""


def read_headers(headers: HeaderSource) -> tuple[dict[str, str], str | None]:
    """``(fields, duplicate)``: lowercased name -> value, and the first :data:`SINGLE_VALUED` header
    that occurs more than once (``None`` when there is none). ASGI byte pairs are read as latin-1."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    fields: dict[str, str] = {}
    duplicate: str | None = None
    for raw_name, raw_value in pairs:
        name = (raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name).lower()
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        if name in fields and name in SINGLE_VALUED and duplicate is None:
            duplicate = name
        fields[name] = value
    return fields, duplicate

"""Streamable HTTP rules the front door applies before a message enters the relay. No I/O.

MCP ``basic/transports`` (2025-11-25, legacy era) and
``basic/transports/streamable-http`` (2026-07-28) define what an HTTP request must carry;
this module decides, from headers and the parsed body alone:

* which era and route a POST takes (:func:`route_post`): an existing legacy session
  (``Mcp-Session-Id``), a new one (``initialize``), or a stateless 2026-07-28 request;
* whether the client can take JSON and/or an SSE stream (:func:`accepts`);
* whether a legacy request's ``MCP-Protocol-Version`` is one guard relays
  (:func:`check_legacy_version`);
* whether a 2026-07-28 request's routing headers agree with its body
  (:func:`check_modern_headers`): ``MCP-Protocol-Version`` with
  ``_meta["io.modelcontextprotocol/protocolVersion"]``, ``Mcp-Method`` with ``method``,
  ``Mcp-Name`` with ``params.name``/``params.uri``, and ``Mcp-Param-*`` with the tool
  arguments the upstream's schema marks ``x-mcp-header``. A mismatch, a missing
  required header or a duplicated one is ``400`` with ``-32020`` (``HeaderMismatch``):
  policy must never decide on a header that something behind guard reads differently.

Security note: guard forwards no client header upstream. The upstream transport
recomputes every mirrored header from the body *as forwarded* (after any stage rewrote
it, :mod:`guard.transports.http`), so what the upstream reads always equals what policy
saw. The checks here refuse clients that disagree with themselves, as the spec requires.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guard import mcp
from guard.jsonrpc import ErrorCode, Kind, Message

MCP_SESSION_ID = "mcp-session-id"
MCP_PROTOCOL_VERSION = "mcp-protocol-version"
MCP_METHOD = "mcp-method"
MCP_NAME = "mcp-name"
MCP_PARAM_PREFIX = "mcp-param-"

HEADER_MISMATCH = -32020
"""2026-07-28 ``HeaderMismatch``: headers disagree with the body, or a required one is missing."""
UNSUPPORTED_PROTOCOL_VERSION = -32022
"""2026-07-28 ``UnsupportedProtocolVersionError``."""

NAME_BEARING = {mcp.TOOLS_CALL: "name", mcp.PROMPTS_GET: "name", mcp.RESOURCES_READ: "uri"}
"""Methods whose ``Mcp-Name`` header mirrors a body field (2026-07-28 "Standard Request Headers")."""

_ERROR_STATUS = {
    ErrorCode.PARSE_ERROR: 400,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    -32021: 400,  # MissingRequiredClientCapability
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    ErrorCode.METHOD_NOT_FOUND: 404,
}
_SENTINEL = re.compile(r"=\?base64\?(?P<payload>.*)\?=", re.DOTALL)
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")


class Route(enum.Enum):
    """Where a POST goes."""

    SESSION = "session"
    """A legacy request inside an existing session (``Mcp-Session-Id``)."""
    INITIALIZE = "initialize"
    """A legacy ``initialize`` without a session id: guard creates a session."""
    MODERN = "modern"
    """A self-contained 2026-07-28 request (no session)."""
    NO_SESSION = "no_session"
    """A legacy-era message without a session id that is not ``initialize``: 400."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP status with the JSON-RPC error that explains it."""

    status: int
    code: int
    message: str
    data: Any = None


def error_status(code: int) -> int:
    """The HTTP status for a JSON-RPC error answered as one JSON body on the 2026-07-28 route.

    2026-07-28 ``streamable-http``: ``404`` for ``-32601``, ``400`` for malformed requests,
    header mismatches and unsupported versions; every other error is a normal JSON-RPC
    answer (``200``), guard's own denials (``-31001`` ...) included.
    """
    return _ERROR_STATUS.get(code, 200)


def route_post(session_id: str | None, version: str | None, message: Message) -> Route:
    """Which route a POST takes; ``version`` is the ``MCP-Protocol-Version`` header.

    Precedence: a session id always means the legacy session route (an unknown id is
    404 there); ``initialize`` starts one; a request naming a version that is not a
    legacy one (header or body ``_meta``) is 2026-07-28; anything else lacks its session.
    """
    if session_id is not None:
        return Route.SESSION
    if message.kind is Kind.REQUEST and message.method == mcp.INITIALIZE:
        return Route.INITIALIZE
    body_version = mcp.protocol_version_of(message)
    if (version is not None and version not in mcp.LEGACY_VERSIONS) or body_version is not None:
        return Route.MODERN
    return Route.NO_SESSION


def accepts(accept: str | None) -> tuple[bool, bool]:
    """``(json, event_stream)``: what an ``Accept`` header allows (RFC 9110 section 12.5.1).

    Wildcards count; a media range with ``q=0`` is refused. A missing header accepts
    anything (RFC 9110: "no preference").
    """
    if accept is None or not accept.strip():
        return True, True
    json_ok = sse_ok = False
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        media = media.lower()
        if any(p.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        if media in ("*/*", "application/*", "application/json"):
            json_ok = True
        if media in ("*/*", "text/*", "text/event-stream"):
            sse_ok = True
    return json_ok, sse_ok


def check_legacy_version(version: str | None, negotiated: str | None) -> Refusal | None:
    """``MCP-Protocol-Version`` on a legacy session request (2025-06-18 and later).

    Absent is allowed (the spec says assume 2025-03-26); otherwise it must be a legacy
    revision guard relays and, once ``initialize`` negotiated one, that revision.
    """
    if version is None:
        return None
    if version not in mcp.LEGACY_VERSIONS:
        return Refusal(400, ErrorCode.INVALID_REQUEST, f"Bad Request: unsupported MCP-Protocol-Version {version!r}",
                       {"reason": "unsupported_protocol_version", "supported": list(mcp.LEGACY_VERSIONS)})
    if negotiated is not None and version != negotiated:
        return Refusal(400, ErrorCode.INVALID_REQUEST,
                       f"Bad Request: MCP-Protocol-Version {version!r} is not the negotiated {negotiated!r}",
                       {"reason": "protocol_version_mismatch"})
    return None


def decode_header_value(value: str) -> str | None:
    """The value a mirrored header carries: verbatim, or the UTF-8 inside ``=?base64?...?=``.

    ``None`` for a malformed sentinel (bad or non-canonical base64, bad UTF-8) or a value
    with characters RFC 9110 does not allow in a field, so it can never match a body value.
    """
    if not _FIELD_VALUE.fullmatch(value):
        return None
    match = _SENTINEL.fullmatch(value)
    if match is None:
        return value
    payload = match.group("payload")
    try:
        decoded = base64.b64decode(payload, validate=True)
    except binascii.Error:
        return None
    if base64.b64encode(decoded).decode("ascii") != payload:
        return None
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _mismatch(text: str) -> Refusal:
    return Refusal(400, HEADER_MISMATCH, f"Header mismatch: {text}", {"reason": "header_mismatch"})


def _fold(headers: Iterable[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    folded: dict[str, str] = {}
    duplicated: set[str] = set()
    for name, value in headers:
        key = name.lower()
        if key in folded:
            duplicated.add(key)
        folded[key] = value
    return folded, duplicated


def _routing(key: str) -> bool:
    return key in (MCP_PROTOCOL_VERSION, MCP_METHOD, MCP_NAME) or key.startswith(MCP_PARAM_PREFIX)


def _value_at(arguments: Any, path: Sequence[str]) -> Any:
    node = arguments
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _same_scalar(header: str, value: Any) -> bool:
    """Header text versus body value: strings verbatim, booleans ``true``/``false``, integers numerically."""
    if isinstance(value, bool):
        return header == ("true" if value else "false")
    if isinstance(value, int):
        try:
            number = float(header)
        except ValueError:
            return False
        return number == value and number.is_integer()
    if isinstance(value, str):
        return header == value
    return False


def check_modern_headers(
    headers: Iterable[tuple[str, str]],
    message: Message,
    param_headers: Mapping[tuple[str, ...], str] | None = None,
) -> Refusal | None:
    """Compare a 2026-07-28 request's routing headers with its body; ``None`` when they agree.

    ``headers`` are the raw ``(name, value)`` pairs (duplicates visible: first-copy and
    last-copy readers would disagree, so a repeated routing header is refused).
    ``param_headers`` maps argument paths to ``x-mcp-header`` names for the called tool,
    as the upstream declared in ``tools/list``; ``None`` when guard has not seen that
    tool's schema, in which case each ``Mcp-Param-*`` value is only checked for a valid
    encoding (guard never forwards it: see the module docstring).
    """
    folded, duplicated = _fold(headers)
    repeated = sorted(k for k in duplicated if _routing(k))
    if repeated:
        return _mismatch(f"{repeated[0]} appears more than once")
    version = folded.get(MCP_PROTOCOL_VERSION)
    body_version = mcp.meta_of(message.params).get(mcp.META_PROTOCOL_VERSION)
    if version is None:
        return _mismatch("MCP-Protocol-Version is required")
    if version != body_version:
        return _mismatch("MCP-Protocol-Version does not match params._meta protocol version")
    method = message.method
    if folded.get(MCP_METHOD) != method:
        return _mismatch("Mcp-Method does not match the body's method" if MCP_METHOD in folded
                         else "Mcp-Method is required")
    name_key = NAME_BEARING.get(method or "")
    raw_name = folded.get(MCP_NAME)
    if name_key is not None:
        body_name = message.params.get(name_key)
        if isinstance(body_name, str):
            if raw_name is None:
                return _mismatch("Mcp-Name is required")
            if decode_header_value(raw_name) != body_name:
                return _mismatch(f"Mcp-Name does not match the body's {name_key!r}")
        elif raw_name is not None:
            return _mismatch(f"Mcp-Name is present but the body has no {name_key!r}")
    elif raw_name is not None and decode_header_value(raw_name) is None:
        return _mismatch("Mcp-Name is not a valid header value")
    return _check_params(folded, message, param_headers)


def _check_params(folded: dict[str, str], message: Message,
                  param_headers: Mapping[tuple[str, ...], str] | None) -> Refusal | None:
    sent = {k[len(MCP_PARAM_PREFIX):]: v for k, v in folded.items() if k.startswith(MCP_PARAM_PREFIX)}
    for token, raw in sent.items():
        if decode_header_value(raw) is None:
            return _mismatch(f"Mcp-Param-{token} is not a valid header value")
    if message.method != mcp.TOOLS_CALL or param_headers is None:
        return None
    arguments = message.params.get("arguments")
    for path, token in param_headers.items():
        raw_value = sent.get(token.lower())
        value = _value_at(arguments, path)
        argument = ".".join(path)
        if not isinstance(value, str | int):  # absent, null, or not a scalar: no header may claim it
            if raw_value is not None:
                return _mismatch(f"Mcp-Param-{token} is present but the body's {argument!r} is not")
            continue
        if raw_value is None:
            return _mismatch(f"Mcp-Param-{token} is required: the body carries {argument!r}")
        decoded = decode_header_value(raw_value)
        if decoded is None or not _same_scalar(decoded, value):
            return _mismatch(f"Mcp-Param-{token} does not match the body's {argument!r}")
    return None

"""JSON-RPC 2.0 message model: parse, validate, serialize, build errors. No I/O.

guard accepts exactly one JSON-RPC message per frame. Batches (JSON arrays) were
allowed only in MCP 2025-03-26 and removed in 2025-06-18; they have been used to
smuggle calls past authorization in other gateways, so guard rejects them with
-32600 and ``id: null`` (see ``MCP-NOTES``: "Revisions and eras").

Error codes guard itself emits live outside the JSON-RPC/MCP reserved range
-32768..-32000 (MCP 2026-07-28 ``basic/index``: "application codes SHOULD sit
outside"), see :class:`ErrorCode`.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import orjson

from guard.errors import InvalidRequest, ParseError

JSONRPC_VERSION = "2.0"

RequestId = str | int


class ErrorCode(enum.IntEnum):
    """JSON-RPC error codes guard sends.

    Standard codes (JSON-RPC 2.0 section 5.1) and guard's application codes
    (-31000..-31099, outside the reserved range).
    """

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603

    POLICY_DENIED = -31001
    """Authorization denied the message."""
    PII_BLOCKED = -31002
    """A PII rule with action ``block`` matched."""
    UNAUTHENTICATED = -31003
    """The session's credentials expired or are no longer valid."""
    UPSTREAM_UNAVAILABLE = -31004
    """The upstream server went away before answering."""
    UPSTREAM_TIMEOUT = -31005
    """The upstream did not answer within the per-call timeout."""
    RATE_LIMITED = -31006
    """The principal's rate limit is exhausted."""
    TOO_MANY_REQUESTS_IN_FLIGHT = -31007
    """The connection has too many requests awaiting an answer."""
    AUDIT_UNAVAILABLE = -31008
    """The audit sink cannot record; guard fails closed."""
    PII_UNAVAILABLE = -31009
    """PII analysis failed or timed out; guard fails closed."""
    PII_TOKEN_INVALID = -31010
    """A protected-value token in the request was tampered with or foreign."""
    UPSTREAM_ERROR = -31011
    """The upstream answered with a transport-level failure (e.g. HTTP 5xx)."""
    SHUTTING_DOWN = -31012
    """guard is draining and does not accept new requests."""
    CIRCUIT_OPEN = -31013
    """The upstream's circuit breaker is open."""


class Kind(enum.Enum):
    """The four shapes of a JSON-RPC 2.0 message."""

    __hash__ = object.__hash__
    """Members are singletons: hash by identity in C (``Enum.__hash__`` is Python code, run per lookup)."""

    REQUEST = "request"
    NOTIFICATION = "notification"
    RESULT = "result"
    ERROR = "error"

    @property
    def is_response(self) -> bool:
        return self is Kind.RESULT or self is Kind.ERROR


@dataclass(slots=True)
class Message:
    """One parsed JSON-RPC message.

    ``payload`` is the decoded JSON object. Stages that rewrite a message build a new
    payload (or mutate a deep copy); :func:`serialize` turns it back into a frame.
    ``raw_size`` is the size in bytes of the frame it came from (0 when built locally).
    """

    kind: Kind
    payload: dict[str, Any]
    raw_size: int = 0

    @property
    def id(self) -> RequestId | None:
        value = self.payload.get("id")
        return value if isinstance(value, str | int) and not isinstance(value, bool) else None

    @property
    def method(self) -> str | None:
        value = self.payload.get("method")
        return value if isinstance(value, str) else None

    @property
    def params(self) -> dict[str, Any]:
        value = self.payload.get("params")
        return value if isinstance(value, dict) else {}

    @property
    def result(self) -> Any:
        return self.payload.get("result")

    @property
    def error(self) -> dict[str, Any] | None:
        value = self.payload.get("error")
        return value if isinstance(value, dict) else None

    def replace_payload(self, payload: dict[str, Any]) -> Message:
        """Return a message of the same kind with a new payload."""
        return Message(self.kind, payload, self.raw_size)


def id_key(request_id: RequestId) -> tuple[type, RequestId]:
    """A dictionary key for a request id that keeps ``1`` and ``"1"`` distinct."""
    return (type(request_id), request_id)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# orjson turns integers beyond 64 bits into floats, silently altering them; a proxy must not
# change numbers, so frames with a run of 19+ digits take the exact stdlib parser. The run is
# found by mapping every ASCII digit to "0" and searching for 19 zeros: both steps are C loops,
# about 12x faster than the equivalent regex ``[0-9]{19,}`` on a 16 KB frame (bench/README.md).
# In UTF-8, bytes 0x30-0x39 only ever encode the ASCII digits, so the two tests agree.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def _has_long_digit_run(data: bytes) -> bool:
    return _LONG_RUN in data.translate(_DIGITS_TO_ZERO)


def loads(data: str | bytes, encoded: bytes | None = None) -> Any:
    """Decode one JSON text exactly, accepting only what every transport can carry unchanged.

    The one JSON decoder for frames in either direction, whatever the transport (WebSocket,
    stdio, Streamable HTTP bodies and SSE events), so numbers and strings are read the same way
    everywhere:

    * integers keep every digit (orjson for the common case, the stdlib beyond 64 bits);
    * a number no finite double can hold (``1e400``) is refused, never turned into ``inf``
      and later into ``null``;
    * a string or key holding a lone UTF-16 surrogate (``"\\ud800"``) is refused: it is valid
      JSON grammar but not Unicode, so no UTF-8 transport can forward it (RFC 8259 section 8.2,
      I-JSON RFC 7493 section 2.1). orjson already refuses these; the stdlib parser does not.

    Raises :class:`ParseError`. When the text decoded but is refused for one of the reasons
    above, the error carries the message's ``id`` (if that id is itself clean) and a ``reason``
    (``invalid_unicode``, ``number_out_of_range``) so the sender can be told which request failed.
    ``encoded`` is ``data`` as UTF-8 when the caller already has it.
    """
    if encoded is None:
        encoded = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    if not _has_long_digit_run(encoded):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ParseError("Parse error: frame is not valid JSON") from exc
    # Only this (rare) path can hold lone surrogates or infinities: orjson refuses both itself.
    try:
        _encode_exact(value)
    except UnicodeEncodeError as surrogate:
        raise ParseError("Parse error: a string is not valid Unicode (lone surrogate)",
                         _clean_id(value), reason="invalid_unicode") from surrogate
    except RecursionError as deep:
        raise ParseError("Parse error: frame is not valid JSON") from deep
    except ValueError as huge:
        raise ParseError("Parse error: a number is too large for a double", _clean_id(value),
                         reason="number_out_of_range") from huge
    return value


def _encode_exact(payload: Any) -> bytes:
    """UTF-8 JSON for values orjson refuses (integers beyond 64 bits).

    Raises ``UnicodeEncodeError`` for a lone surrogate and ``ValueError`` for a non-finite
    float: neither can be written as interoperable JSON.
    """
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _clean_id(value: Any) -> RequestId | None:
    """The id of a decoded message, if it is a valid id that can itself be written back."""
    if not isinstance(value, dict):
        return None
    candidate = value.get("id")
    if isinstance(candidate, str):
        try:
            candidate.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return candidate if _is_valid_id(candidate) else None


def _is_valid_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _salvage_id(obj: dict[str, Any]) -> RequestId | None:
    value = obj.get("id")
    return value if _is_valid_id(value) else None


def classify(obj: Any, raw_size: int = 0) -> Message:
    """Validate a decoded JSON value as one JSON-RPC 2.0 message.

    Raises :class:`InvalidRequest` (with the salvaged id, if any) for anything else:
    batches, wrong ``jsonrpc`` version, non-string methods, ids that are not a
    string or integer (MCP forbids ``null`` ids on requests), malformed errors.
    """
    if isinstance(obj, list):
        raise InvalidRequest("Invalid Request: JSON-RPC batches are not supported")
    if not isinstance(obj, dict):
        raise InvalidRequest("Invalid Request: a JSON-RPC message must be a JSON object")
    salvaged = _salvage_id(obj)
    if obj.get("jsonrpc") != JSONRPC_VERSION:
        raise InvalidRequest('Invalid Request: "jsonrpc" must be "2.0"', salvaged)
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str) or not method:
            raise InvalidRequest('Invalid Request: "method" must be a non-empty string', salvaged)
        if "params" in obj and not isinstance(obj["params"], dict):
            raise InvalidRequest('Invalid Request: "params" must be an object', salvaged)
        if "result" in obj or "error" in obj:
            raise InvalidRequest("Invalid Request: a request cannot carry result or error", salvaged)
        if "id" not in obj:
            return Message(Kind.NOTIFICATION, obj, raw_size)
        if not _is_valid_id(obj["id"]):
            raise InvalidRequest('Invalid Request: "id" must be a string or an integer')
        return Message(Kind.REQUEST, obj, raw_size)
    has_result, has_error = "result" in obj, "error" in obj
    if has_result == has_error:
        raise InvalidRequest(
            "Invalid Request: a message needs a method, or exactly one of result and error", salvaged
        )
    if has_result:
        if not _is_valid_id(obj.get("id")):
            raise InvalidRequest('Invalid Request: a result needs a string or integer "id"')
        return Message(Kind.RESULT, obj, raw_size)
    error = obj["error"]
    if (
        not isinstance(error, dict)
        or not isinstance(error.get("code"), int)
        or isinstance(error.get("code"), bool)
        or not isinstance(error.get("message"), str)
    ):
        raise InvalidRequest('Invalid Request: "error" needs an integer code and a string message', salvaged)
    if obj.get("id") is not None and not _is_valid_id(obj.get("id")):
        raise InvalidRequest('Invalid Request: "id" must be a string, an integer or null')
    return Message(Kind.ERROR, obj, raw_size)


def parse(frame: str | bytes) -> Message:
    """Parse one frame into a :class:`Message`.

    Raises :class:`ParseError` for invalid JSON and :class:`InvalidRequest` for JSON
    that is not an acceptable JSON-RPC 2.0 message.
    """
    encoded = frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")
    return classify(loads(frame, encoded), len(encoded))


def serialize(message: Message | dict[str, Any]) -> str:
    """Serialize a message (or payload) to compact JSON text that is valid UTF-8.

    Everything :func:`parse` accepts serializes (a property test holds the two together).
    A payload built locally with a lone surrogate or a non-finite float raises ``ValueError``
    rather than producing text a transport would fail to send or an upstream would misread.
    """
    payload = message.payload if isinstance(message, Message) else message
    try:
        return orjson.dumps(payload).decode("utf-8")
    except TypeError:
        # Integers beyond 64 bits: orjson refuses, the stdlib does not.
        return _encode_exact(payload).decode("utf-8")


def error_response(
    request_id: RequestId | None, code: int, message: str, data: Any = None
) -> Message:
    """Build a JSON-RPC error response (``id`` may be ``None`` when unknown)."""
    error: dict[str, Any] = {"code": int(code), "message": message}
    if data is not None:
        error["data"] = data
    return Message(Kind.ERROR, {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error})


def request(request_id: RequestId, method: str, params: dict[str, Any] | None = None) -> Message:
    """Build a JSON-RPC request."""
    payload: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "id": request_id, "method": method}
    if params is not None:
        payload["params"] = params
    return Message(Kind.REQUEST, payload)


def notification(method: str, params: dict[str, Any] | None = None) -> Message:
    """Build a JSON-RPC notification."""
    payload: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method}
    if params is not None:
        payload["params"] = params
    return Message(Kind.NOTIFICATION, payload)

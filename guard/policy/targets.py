"""Targets as the policy sees them: validity limits and the refusal of ambiguous URIs. No I/O.

A target is a tool or prompt name, a resource URI (or URI template), or a PII reveal
object. Rules are matched against the target *exactly as the client sent it*, which is also
exactly what guard forwards; a target that could mean something else to the upstream is
refused outright (``invalid_target``) instead of being matched in some other form:

* longer than :data:`MAX_TARGET_LENGTH`, or holding a control character: MCP tool names are
  short identifiers and RFC 3986 URIs contain no control characters, so such a value can only
  be an attempt to confuse matching, logs or audit;
* a URI (anything starting with an RFC 3986 scheme, ``file:``, ``customers:``...) whose
  hierarchical part -- authority and path, up to ``?`` or ``#`` -- holds a ``.`` or ``..``
  segment, literally or once percent-decoding is applied (``%2E%2E``, ``..%2F``,
  ``C002%2F..%2Fdirectory``, ``%252e%252e`` for an upstream that decodes twice), or with
  ``\\`` read as ``/``. RFC 3986 section 5.2.4 would remove dot segments, but upstreams differ in
  whether and when they do: ``crm://customers/c-1/../../x`` checked as ``crm://customers/x``
  and forwarded raw would let the upstream resolve something else than was authorized.
  Refusing is the only form in which "what was checked" and "what is forwarded" are the same
  string; URIs a server lists never contain dot segments, so legitimate clients never hit it.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

MAX_TARGET_LENGTH: Final = 2048
MAX_DECODE_PASSES: Final = 4
"""Percent-decoding rounds tried when looking for hidden dot segments."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 controls, DEL and C1 controls."""


def _has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def _hierarchical_part(value: str) -> str | None:
    """Authority and path of a URI (after ``scheme:``, before ``?``/``#``); ``None`` for a name."""
    scheme = _SCHEME.match(value)
    if scheme is None:
        return None
    rest = value[scheme.end():]
    for ch in "?#":
        pos = rest.find(ch)
        if pos >= 0:
            rest = rest[:pos]
    return rest


def _has_dot_segment(path: str) -> bool:
    return any(seg in (".", "..") for seg in path.replace("\\", "/").split("/"))


def check_target(value: str) -> str | None:
    """``value`` itself when rules may be matched against it, ``None`` when it must be refused."""
    if len(value) > MAX_TARGET_LENGTH or _has_control(value):
        return None
    path = _hierarchical_part(value)
    if not path:
        return value
    for _ in range(MAX_DECODE_PASSES):
        if _has_dot_segment(path):
            return None
        try:
            decoded = unquote(path, errors="strict")
        except UnicodeDecodeError:
            return None
        if decoded == path:
            return value
        if _has_control(decoded):
            return None
        path = decoded
    return None  # still changing after several decodings: refuse rather than guess

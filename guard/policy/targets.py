"""Targets as the policy sees them: validity limits and URI canonicalization. No I/O.

A target is a tool or prompt name, a resource URI (or URI template), or a PII reveal
object. Before matching:

* a target longer than :data:`MAX_TARGET_LENGTH` or holding a control character is
  refused outright (``invalid_target``): MCP tool names are short identifiers and RFC 3986
  URIs contain no control characters, so such a value can only be an attempt to confuse
  matching, logs or audit;
* a URI's path has its dot segments removed (RFC 3986 section 5.2.4, after decoding
  ``%2E``), so ``file:///srv/public/../secret`` is matched as ``file:///srv/secret`` and a
  ``file:///srv/public/**`` rule does not cover it;
* a URI whose *fully* percent-decoded path still contains a ``..`` segment (e.g.
  ``..%2F..%2Fetc``) is refused as ambiguous, because an upstream that decodes twice
  would resolve it differently from the policy.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

MAX_TARGET_LENGTH: Final = 2048


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""C0 controls, DEL and C1 controls."""


def _has_control(value: str) -> bool:
    return _CONTROL.search(value) is not None


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute or relative path."""
    absolute = path.startswith("/")
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
            continue
        if seg == "..":
            if len(out) > (1 if absolute else 0):
                out.pop()
            if last:
                out.append("")
            continue
        out.append(seg)
    result = "/".join(out)
    if absolute and not result.startswith("/"):
        result = "/" + result
    return result


def _split_uri(value: str) -> tuple[str, str, str] | None:
    """``(scheme://authority, path, ?query#fragment)`` for a hierarchical URI, else None."""
    sep = value.find("://")
    if sep <= 0:
        return None
    start = sep + 3
    end = len(value)
    for ch in "?#":
        pos = value.find(ch, start)
        if pos >= 0:
            end = min(end, pos)
    slash = value.find("/", start, end)
    if slash < 0:
        return value[:end], "", value[end:]
    return value[:slash], value[slash:end], value[end:]


def canonical_target(value: str) -> str | None:
    """The form of ``value`` rules are matched against, or None if it must be refused."""
    if len(value) > MAX_TARGET_LENGTH or _has_control(value):
        return None
    if "://" not in value or ("." not in value and "%" not in value and "\\" not in value):
        return value
    parts = _split_uri(value)
    if parts is None:
        return value
    head, path, tail = parts
    if not path:
        return value
    dotted = path.replace("%2e", ".").replace("%2E", ".")
    canonical = remove_dot_segments(dotted)
    try:
        decoded = unquote(canonical, errors="strict")
    except UnicodeDecodeError:
        return None
    for seg in decoded.replace("\\", "/").split("/"):
        if seg in ("..", "."):
            return None
    return head + canonical + tail

"""Every place an MCP message can carry personal data, and a copy-on-write rewrite of them.

guard walks **everything** in every message, both directions, every method (lists,
``initialize`` and ``server/discover`` results included), except an explicit list of
structural fields. :func:`transform` calls ``visit`` on each candidate :class:`Leaf`, in a
fixed order, and rebuilds the payload with its replacements: containers on unchanged paths
are shared, changed paths are copied, the input is never mutated.

Candidates:

* every string value (``kind = "text"``);
* every object key in user data (``"key"``): a JSON key can hold an e-mail or a phone;
  keys made only of ASCII letters, ``_``, ``-`` and ``.`` are skipped (no pattern-detected
  entity fits in them);
* every integer of six digits or more (``"number"``): a card or phone stored as a number.
  A protected number becomes a string (the only way it can hold a token or a mask);
* strings holding serialized JSON are parsed (object pairs kept in order, **duplicate keys
  included**), walked as user data and re-serialized in their original style when changed;
* base64 runs inside any string that decode to text are walked as text (``<base64>``) and
  re-encoded when changed; blob fields (image/audio ``data``, resource ``blob``) only with
  ``scan_blobs``.

Structure decides what is a protocol field. The envelope, ``params``, ``result``,
``error`` and the MCP objects inside them (content blocks, tools, prompts, resources,
templates, messages, roots, ``serverInfo``, ``inputRequests``...) are walked in *protocol*
mode: their keys are MCP field names (not candidates) and the values of
:data:`STRUCTURAL` fields are never visited. Everything else, including any field the
walker does not know (a ``summary`` beside ``content``, a ``note`` on a text block), is
*user data*: every key, string and number is a candidate. ``_meta`` values are user data
(their keys are names; protocol version, capabilities and progress tokens are skipped).
JSON Schemas (a tool's ``inputSchema``/``outputSchema``, an elicitation's
``requestedSchema``) are protected *in place*: property names and schema keywords stay as
they are so the schema stays valid and the tool keeps its interface; ``title``,
``description``, ``default``, ``examples``, ``enum`` and ``const`` are candidates.

The PII stage walks a message twice: :func:`walk` visits every candidate (to analyse them)
and records the payload's :data:`Shape`, where each subtree's leaves end; after the plan,
:func:`rewrite` substitutes the protected leaves by their visiting position and passes over
every subtree (a record, a string, an embedded JSON document) that holds none, instead of
walking it again. This module is compiled with mypyc (``setup.py``); the classes it cannot
define compiled live in :mod:`guard.pii.jsontext`.

Consecutive text blocks of one ``content`` list get the same ``block`` group so that a
value split across them can be found (:mod:`guard.pii.protect` analyses the seams).

A tool result with ``structuredContent`` SHOULD also carry it serialized in a text block (MCP
2025-06-18 and later, "Structured Content"). When the result's only text block is exactly
that (its text parses, without duplicate keys or ``NaN``, to the same values of the same
types in the same order: compared as canonical JSON), the copy is not walked a second time:
``structuredContent`` is walked once and the text is rewritten from its protected form in the
text's own style. Anything else in the text (a duplicate key, one value that differs, a
second text block) makes it an ordinary string, walked as such.

Limits (issue 12 item 15): nesting deeper than :data:`MAX_DEPTH` raises
:class:`Unscannable`; the stage rejects such a message whatever ``fail_open`` says.

Paths name each leaf for findings and audit, e.g.
``$.result.content[0].text<json>.customers[1].email``. A key that could itself carry
personal data (digits, ``@``, non-ASCII, long) is named by its position, ``{2}``, so
paths never copy a value into the audit log; ``<key>`` marks a key leaf.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import json
import re
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

import orjson

from guard.errors import PIIError
from guard.jsonrpc import Kind
from guard.pii.jsontext import Pairs, Raw

MAX_JSON_DEPTH = 4
"""How many levels of JSON-inside-a-string are parsed (deeper text is analysed as text;
normalization undoes its escapes)."""
MAX_EMBEDDED_JSON = 2 * 1024 * 1024
"""Longest string that is tried as embedded JSON (characters)."""
MAX_DEPTH = 128
"""Deepest nesting (objects, arrays and embedded JSON levels) guard scans; deeper is rejected."""
MIN_NUMBER = 100_000
"""Integers below this (five digits or fewer) hold no shipped entity type and are skipped."""
MIN_BASE64_RUN = 16
"""Shortest base64 run inside a string that is tried (characters)."""

STRUCTURAL = frozenset({
    "jsonrpc", "id", "method", "type", "mimeType", "requestState", "cursor", "nextCursor", "protocolVersion",
    "supportedVersions", "progressToken", "requestId", "resultType", "role", "level", "capabilities", "isError",
    "progress", "total", "maxTokens", "temperature", "stopReason", "stopSequences", "includeContext",
    "modelPreferences", "code", "size", "version", "priority", "audience", "lastModified", "listChanged",
    "subscribe", "hasMore", "toolUseId", "action", "required", "ttl", "pollInterval", "taskId", "status",
})
"""MCP/JSON-RPC fields whose values are never scanned (in protocol mode only): identifiers,
enumerations, versions, cursors, counters and flags the protocol defines. A field of the
same name inside user data (``arguments``, ``structuredContent``, embedded JSON...) is
scanned like any other."""

_PROTOCOL = frozenset({
    "params", "result", "error", "content", "contents", "resource", "tools", "prompts", "resources",
    "resourceTemplates", "messages", "roots", "completion", "serverInfo", "clientInfo", "inputRequests",
    "inputResponses", "argument", "context", "ref", "annotations", "icons", "execution", "task", "tasks",
    "values",
})
"""Fields whose values are MCP objects (walked in protocol mode)."""
_SCHEMAS = frozenset({"inputSchema", "outputSchema", "requestedSchema"})
_META_STRUCTURAL = frozenset({"progressToken", "io.modelcontextprotocol/protocolVersion",
                              "io.modelcontextprotocol/clientCapabilities", "io.modelcontextprotocol/related-task"})
_BLOCK_TYPES = frozenset({"text", "image", "audio", "resource", "resource_link", "tool_use", "tool_result"})

# JSON Schema (2020-12) keywords, by what their value is.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_ONE = frozenset({"items", "not", "if", "then", "else", "additionalProperties", "contains", "propertyNames",
                         "unevaluatedProperties", "unevaluatedItems", "contentSchema", "additionalItems"})
_SCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_TEXT = frozenset({"title", "description", "$comment", "default", "examples", "enum", "const"})

PROTOCOL, FREE, SCHEMA, META = "protocol", "free", "schema", "meta"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_QUOTABLE = re.compile(r"[A-Za-z_. \-]{1,64}")
_SAFE_KEY = re.compile(r"[A-Za-z_.\-]{1,64}")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{" + str(MIN_BASE64_RUN) + r",}={0,2}")
"""Leftmost-longest (``finditer``): a match always starts at the beginning of its run."""


class Unscannable(PIIError):
    """A message guard cannot walk (too deep); ``reason`` is a stable code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Leaf:
    """One candidate: what to analyse and where it sits (made for every string walked).

    A plain class with its own ``__init__``: compiled, mypyc makes it a native class, built
    without calling into the interpreter (a ``NamedTuple``'s ``__new__`` is Python code).
    """

    text: str
    """The string (a number's decimal digits, a key's text)."""
    path: str
    key: str | None
    """The JSON key holding it (its context: ``card_number``, ``phone``), if any."""
    kind: str
    """``text``, ``key`` or ``number``."""
    block: int | None
    """Group of adjacent text blocks this leaf belongs to (``content[i].text``), if any."""

    def __init__(self, text: str, path: str, key: str | None, kind: str = "text", block: int | None = None) -> None:
        self.text = text
        self.path = path
        self.key = key
        self.kind = kind
        self.block = block

    def fields(self) -> tuple[str, str, str | None, str, int | None]:
        return self.text, self.path, self.key, self.kind, self.block

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Leaf) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash(self.fields())

    def __repr__(self) -> str:
        return (f"Leaf(text={self.text!r}, path={self.path!r}, key={self.key!r}, kind={self.kind!r}, "
                f"block={self.block!r})")


Visit = Callable[[Leaf], "str | None"]
"""``visit(leaf) -> replacement`` (``None``: unchanged)."""


def _object(pairs: list[tuple[str, Any]]) -> Any:
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else Pairs(pairs)


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_object, parse_float=Raw, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _key_segment(key: str, index: int) -> str:
    if len(key) <= 64:
        segment = _named_segment(key)
        if segment is not None:
            return segment
    return f"{{{index}}}"


@functools.lru_cache(maxsize=4096)
def _named_segment(key: str) -> str | None:
    """``.key`` or ``["a key"]`` for a key that cannot carry personal data; ``None`` otherwise."""
    if _IDENT.fullmatch(key) and not any(c.isdigit() for c in key[-4:]):
        return f".{key}"
    if _QUOTABLE.fullmatch(key):
        return f"[{json.dumps(key)}]"
    return None


@functools.lru_cache(maxsize=4096)
def _safe_key(key: str) -> bool:
    return _SAFE_KEY.fullmatch(key) is not None


def key_safe(key: str) -> bool:
    """True for keys that cannot hold a pattern-detected value (letters, ``_ - .`` only)."""
    return len(key) <= 64 and _safe_key(key)


class _Run:
    """One walk. With ``shape`` it also records (``edits is None``) or replays (``edits`` given)
    the extent of every subtree (:class:`Shape`)."""

    def __init__(self, visit: Visit, scan_blobs: bool, shape: list[int] | None = None,
                 edits: Mapping[int, str] | None = None) -> None:
        self.visit = visit
        self.scan_blobs = scan_blobs
        self.groups = 0
        self.shape = shape
        self.replay = edits is not None
        self.edits: Mapping[int, str] = edits if edits is not None else {}
        self.edit_positions = sorted(self.edits)
        self.position = 0
        """Leaves visited so far (the next leaf's position)."""
        self.node = 0
        """Replay: offset in ``shape`` of the next subtree."""

    # -- subtrees ------------------------------------------------------------------------------

    def leaf(self, leaf: Leaf) -> str | None:
        position = self.position
        self.position = position + 1
        if self.replay:
            return self.edits.get(position)
        return self.visit(leaf)

    def skip(self) -> bool:
        """Replay: pass over the next subtree when none of its leaves has an edit."""
        assert self.shape is not None
        node = self.node
        end = self.shape[node]
        i = bisect.bisect_left(self.edit_positions, self.position)
        if i == len(self.edit_positions) or self.edit_positions[i] >= end:
            self.position = end
            self.node = self.shape[node + 1]
            return True
        self.node = node + 2
        return False

    def enter(self) -> int:
        """Record: a new subtree; returns its offset for :meth:`leave`."""
        assert self.shape is not None
        node = len(self.shape)
        self.shape.append(0)
        self.shape.append(0)
        return node

    def leave(self, node: int) -> None:
        assert self.shape is not None
        self.shape[node] = self.position
        self.shape[node + 1] = len(self.shape)

    # -- values --------------------------------------------------------------------------------

    def value(self, value: Any, path: str, key: str | None, mode: str, depth: int) -> Any:
        if isinstance(value, Raw):
            return value
        if isinstance(value, str):
            return self.text(value, path, key, depth)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            if abs(value) < MIN_NUMBER or mode == PROTOCOL:
                return value
            new = self.leaf(Leaf(str(value), path, key, "number"))
            return value if new is None or new == str(value) else new
        if not isinstance(value, dict | list):
            return value  # a float: no shipped entity type is a float
        if depth >= MAX_DEPTH:
            raise Unscannable("pii_too_deep")
        if self.shape is None:
            return self.container(value, path, key, mode, depth)
        if self.replay:
            return value if self.skip() else self.container(value, path, key, mode, depth)
        node = self.enter()
        out = self.container(value, path, key, mode, depth)
        self.leave(node)
        return out

    def container(self, value: Any, path: str, key: str | None, mode: str, depth: int) -> Any:
        if isinstance(value, Pairs):
            return self.pairs(value, path, depth + 1)
        if isinstance(value, dict):
            if mode == SCHEMA:
                return self.schema(value, path, depth + 1)
            if mode == META:
                return self.meta(value, path, depth + 1)
            if mode == PROTOCOL:
                return self.protocol(value, path, depth + 1)
            return self.free(value, path, depth + 1)
        return self.array(value, path, key, mode, depth + 1)

    def array(self, value: list[Any], path: str, key: str | None, mode: str, depth: int) -> list[Any]:
        out: list[Any] | None = None
        group: int | None = None
        if mode == PROTOCOL and key == "content":
            texts = [isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in value]
            if sum(texts) > 1:
                group = self.groups
                self.groups += 1
        for i, child in enumerate(value):
            child_mode = mode
            if mode == PROTOCOL and key == "content" and isinstance(child, dict) \
                    and child.get("type") not in _BLOCK_TYPES:
                child_mode = FREE
            new: Any
            if group is not None and isinstance(child, dict) and child.get("type") == "text":
                new = self.text_block(child, f"{path}[{i}]", group, depth)
            else:
                new = self.value(child, f"{path}[{i}]", key, child_mode, depth)
            if new is not child:
                if out is None:
                    out = list(value)
                out[i] = new
        return value if out is None else out

    def text_block(self, block: dict[str, Any], path: str, group: int, depth: int) -> dict[str, Any]:
        out: dict[str, Any] | None = None
        for i, (k, child) in enumerate(block.items()):
            if k in STRUCTURAL:
                continue
            child_path = f"{path}{_key_segment(k, i)}"
            if k == "text" and isinstance(child, str):
                new: Any = self.text(child, child_path, None, depth, group)
            elif k == "_meta":
                new = self.value(child, child_path, k, META, depth)
            else:
                new = self.value(child, child_path, k, self.child_mode(k, child), depth)
            if new is not child:
                if out is None:
                    out = dict(block)
                out[k] = new
        return block if out is None else out

    # -- objects -------------------------------------------------------------------------------

    @staticmethod
    def child_mode(key: str, child: Any) -> str:
        if key in _PROTOCOL:
            if key == "content" and isinstance(child, dict) and child.get("type") not in _BLOCK_TYPES:
                return FREE  # an elicitation answer: the user's values
            return PROTOCOL
        if key in _SCHEMAS:
            return SCHEMA
        if key == "_meta":
            return META
        return FREE

    def protocol(self, value: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] | None = None
        blob_holder = value.get("type") in ("image", "audio") or "blob" in value
        mirror = _mirrored_block(value) if "structuredContent" in value else None
        for i, (k, child) in enumerate(value.items()):
            if k in STRUCTURAL:
                continue
            child_path = f"{path}{_key_segment(k, i)}"
            if (k == "blob" or (k == "data" and blob_holder)) and isinstance(child, str):
                new: Any = self.blob(child, child_path, k, depth) if self.scan_blobs else child
            elif k == "content" and mirror is not None:
                new = self.content_but_mirror(child, child_path, mirror, depth)
            else:
                new = self.value(child, child_path, k, self.child_mode(k, child), depth)
            if new is not child:
                if out is None:
                    out = dict(value)
                out[k] = new
        if mirror is not None and out is not None and out.get("structuredContent") is not value["structuredContent"]:
            content = list(out["content"])
            block = content[mirror]
            content[mirror] = {k: _dumps_like(out["structuredContent"], v) if k == "text" else v
                               for k, v in block.items()}
            out["content"] = content
        return value if out is None else out

    def content_but_mirror(self, content: list[Any], path: str, mirror: int, depth: int) -> list[Any]:
        """``content`` walked except the text of block ``mirror`` (``structuredContent`` serialized)."""
        block = content[mirror]
        bare = {k: v for k, v in block.items() if k != "text"}
        walked = self.value([*content[:mirror], bare, *content[mirror + 1:]], path, "content", PROTOCOL, depth)
        out: list[Any] | None = None
        for i, new in enumerate(walked):
            if i == mirror:
                new = block if new is bare else {k: v if k == "text" else new[k] for k, v in block.items()}
            if new is not content[i]:
                if out is None:
                    out = list(content)
                out[i] = new
        return content if out is None else out

    def meta(self, value: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] | None = None
        for i, (k, child) in enumerate(value.items()):
            if k in _META_STRUCTURAL:
                continue
            new = self.value(child, f"{path}{_key_segment(k, i)}", k, FREE, depth)
            if new is not child:
                if out is None:
                    out = dict(value)
                out[k] = new
        return value if out is None else out

    def schema(self, value: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] | None = None
        for i, (k, child) in enumerate(value.items()):
            child_path = f"{path}{_key_segment(k, i)}"
            if k in _SCHEMA_MAPS and isinstance(child, dict):
                new: Any = self.schema_map(child, child_path, depth + 1)
            elif k in _SCHEMA_ONE:
                new = self.value(child, child_path, k, SCHEMA, depth)
            elif k in _SCHEMA_LIST and isinstance(child, list):
                new = self.array(child, child_path, k, SCHEMA, depth)
            elif k in _SCHEMA_TEXT:
                new = self.value(child, child_path, k, FREE, depth)
            elif k == "_meta":
                new = self.value(child, child_path, k, META, depth)
            else:
                continue  # type, format, pattern, required, $ref, bounds...: the schema's structure
            if new is not child:
                if out is None:
                    out = dict(value)
                out[k] = new
        return value if out is None else out

    def schema_map(self, value: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        if depth >= MAX_DEPTH:
            raise Unscannable("pii_too_deep")
        out: dict[str, Any] | None = None
        for i, (name, child) in enumerate(value.items()):
            new = self.value(child, f"{path}{_key_segment(name, i)}", name, SCHEMA, depth)
            if new is not child:
                if out is None:
                    out = dict(value)
                out[name] = new
        return value if out is None else out

    def free(self, value: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        items: list[tuple[str, Any]] | None = None
        for i, (k, child) in enumerate(value.items()):
            child_path = f"{path}{_key_segment(k, i)}"
            new_key = self.key(k, child_path, depth)
            new = self.value(child, child_path, k, META if k == "_meta" else FREE, depth)
            if items is None and (new_key != k or new is not child):
                items = list(value.items())[:i]
            if items is not None:
                items.append((new_key, new))
        return value if items is None else dict(_unique(items))

    def pairs(self, value: Pairs, path: str, depth: int) -> Pairs:
        changed = False
        items = Pairs()
        for i, (k, child) in enumerate(value):
            child_path = f"{path}{_key_segment(k, i)}"
            new_key = self.key(k, child_path, depth)
            new = self.value(child, child_path, k, FREE, depth)
            changed = changed or new_key != k or new is not child
            items.append((new_key, new))
        return items if changed else value

    def key(self, key: str, path: str, depth: int) -> str:
        if key_safe(key):
            return key
        new = self.leaf(Leaf(key, path + "<key>", None, "key"))
        return key if new is None else new

    # -- strings -------------------------------------------------------------------------------

    def text(self, value: str, path: str, key: str | None, depth: int, block: int | None = None) -> str:
        if self.shape is None:
            return self.string(value, path, key, depth, block)
        if self.replay:
            return value if self.skip() else self.string(value, path, key, depth, block)
        node = self.enter()
        out = self.string(value, path, key, depth, block)
        self.leave(node)
        return out

    def string(self, value: str, path: str, key: str | None, depth: int, block: int | None) -> str:
        if len(value) <= MAX_EMBEDDED_JSON and path.count("<json>") < MAX_JSON_DEPTH:
            body = value.strip()
            if body[:1] in ("{", "[") and body[-1:] in ("}", "]"):
                try:
                    doc = _loads(body)
                except (ValueError, RecursionError):
                    doc = None
                if isinstance(doc, dict | list):
                    new_doc = self.value(doc, path + "<json>", key, FREE, depth)
                    return value if new_doc is doc else _dumps_like(new_doc, value)
        runs = _base64_runs(value)
        new_runs: list[tuple[str, str]] = []
        for run, decoded in runs:
            new_text = self.text(decoded, path + "<base64>", key, depth + 1)
            if new_text is not decoded:
                new_runs.append((run, _encode_like(new_text, run)))
        new = self.leaf(Leaf(value, path, key, "text", block))
        result = value if new is None else new
        for run, replacement in new_runs:
            result = result.replace(run, replacement)
        return value if result == value else result

    def blob(self, value: str, path: str, key: str, depth: int) -> str:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return value
        new = self.text(decoded, path + "<base64>", key, depth + 1)
        return value if new is decoded else base64.b64encode(new.encode("utf-8")).decode("ascii")


def _mirrored_block(result: dict[str, Any]) -> int | None:
    """Index of the result's only text block if its text is ``structuredContent`` serialized.

    Equal means the same canonical JSON (orjson) of the text parsed with the standard library
    (duplicate keys and ``NaN``/``Infinity`` refused) and of ``structuredContent``: same keys in
    the same order, same strings, numbers of the same type and value. A copy that differs in
    anything (a number written as an integer in one and a float in the other, a key the other
    lacks) is not a mirror and is walked as any string.
    """
    structured = result["structuredContent"]
    content = result.get("content")
    if not isinstance(structured, dict) or not structured or not isinstance(content, list):
        return None
    found: int | None = None
    for i, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "text":
            if found is not None:
                return None  # several text blocks: walked as such (their seams are analysed together)
            found = i
    if found is None:
        return None
    text = content[found].get("text")
    if not isinstance(text, str) or len(text) > MAX_EMBEDDED_JSON:
        return None
    body = text.strip()
    if body[:1] != "{" or body[-1:] != "}":
        return None
    try:
        doc = json.loads(body, object_pairs_hook=_distinct_object, parse_constant=_no_constant)
        return found if orjson.dumps(doc) == orjson.dumps(structured) else None
    except (ValueError, TypeError, RecursionError, orjson.JSONEncodeError):
        return None


def _distinct_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


def _unique(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Keys stay distinct after protection (two masked keys can look alike): ``~2``, ``~3``... appended."""
    seen: set[str] = set()
    out: list[tuple[str, Any]] = []
    for k, v in items:
        name, n = k, 1
        while name in seen:
            n += 1
            name = f"{k}~{n}"
        seen.add(name)
        out.append((name, v))
    return out


def _base64_runs(text: str) -> list[tuple[str, str]]:
    """Base64 (or base64url) runs in ``text`` that decode to printable UTF-8 text."""
    if len(text) < MIN_BASE64_RUN:
        return []
    out: list[tuple[str, str]] = []
    for m in _BASE64_RUN.finditer(text):
        run = m.group(0)
        body = run.rstrip("=")
        if not (any(c.isupper() for c in body) and any(c.islower() for c in body)):
            continue  # words, identifiers and hex are not base64 of text
        url = "-" in body or "_" in body
        if url and ("+" in body or "/" in body):
            continue
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_" if url else None, validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if len(decoded) >= 4 and all(c.isprintable() or c in "\n\r\t" for c in decoded):
            out.append((run, decoded))
    return out


def _encode_like(text: str, run: str) -> str:
    body = run.rstrip("=")
    url = "-" in body or "_" in body
    encoded = (base64.urlsafe_b64encode if url else base64.b64encode)(text.encode("utf-8")).decode("ascii")
    return encoded if run.endswith("=") or len(body) % 4 == 0 else encoded.rstrip("=")


def _dumps_like(doc: Any, original: str) -> str:
    """Serialize ``doc`` in the style of ``original`` (indent, separators, ASCII escapes)."""
    body = original.strip()
    lead = original[: len(original) - len(original.lstrip())]
    trail = original[len(original.rstrip()):]
    indent: str | None = None
    item, colon = ",", ":"
    if "\n" in body:
        m = re.search(r"\n([ \t]+)\S", body)
        indent = m.group(1) if m else ""
        colon = ": "
    elif re.search(r'":\s', body) or re.search(r",\s", body):
        item, colon = ", ", ": "
    ascii_only = body.isascii() and "\\u" in body
    return lead + _dump(doc, indent, item, colon, ascii_only, 0) + trail


def _dump(value: Any, indent: str | None, item: str, colon: str, ascii_only: bool, level: int) -> str:
    if isinstance(value, Raw):
        return str(value)
    quote = encode_basestring_ascii if ascii_only else encode_basestring  # what json.dumps calls
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Pairs) or isinstance(value, dict):
        pairs = list(value) if isinstance(value, Pairs) else list(value.items())
        if not pairs:
            return "{}"
        parts = [quote(k) + colon + _dump(v, indent, item, colon, ascii_only, level + 1) for k, v in pairs]
        return _join(parts, "{", "}", indent, item, level)
    if isinstance(value, list):
        if not value:
            return "[]"
        return _join([_dump(v, indent, item, colon, ascii_only, level + 1) for v in value], "[", "]", indent, item,
                     level)
    if value is True or value is False or value is None:
        return "true" if value is True else "false" if value is False else "null"
    if type(value) is int:
        return int.__repr__(value)
    return json.dumps(value)


def _join(parts: list[str], opening: str, closing: str, indent: str | None, item: str, level: int) -> str:
    if indent is None:
        return opening + item.join(parts) + closing
    inner = "\n" + indent * (level + 1)
    return opening + inner + ("," + inner).join(parts) + "\n" + indent * level + closing


def transform(payload: Mapping[str, Any], kind: Kind, method: str | None, to_client: bool, visit: Visit,
              scan_blobs: bool = False) -> dict[str, Any]:
    """Apply ``visit`` to every candidate of a JSON-RPC payload (copy on write).

    Returns ``payload`` itself when nothing changed. The visiting order is deterministic,
    so a first pass can collect leaves and a second pass substitute results by position.
    ``kind``, ``method`` and ``to_client`` do not change what is walked (everything is);
    they are kept for callers that pass them. Raises :class:`Unscannable` for input nested
    deeper than :data:`MAX_DEPTH`.
    """
    src = payload if isinstance(payload, dict) else dict(payload)
    run = _Run(visit, scan_blobs)
    return run.protocol(src, "$", 0)


Shape = list[int]
"""Where every subtree of one payload ends, recorded by :func:`walk` for :func:`rewrite`: per
subtree (a container or a string, in visiting order) the position after its last leaf and the
offset of the next subtree that is not inside it."""


def walk(payload: Mapping[str, Any], visit: Visit, scan_blobs: bool = False) -> Shape:
    """Call ``visit`` on every candidate of ``payload``, in :func:`transform`'s order (its
    return value is ignored), and return the payload's :data:`Shape` for :func:`rewrite`."""
    shape: Shape = []
    run = _Run(visit, scan_blobs, shape)
    run.protocol(payload if isinstance(payload, dict) else dict(payload), "$", 0)
    return shape


def rewrite(payload: Mapping[str, Any], edits: Mapping[int, str], shape: Shape,
            scan_blobs: bool = False) -> dict[str, Any]:
    """``payload`` with the leaf at each position of ``edits`` replaced (copy on write).

    The same as :func:`transform` with a ``visit`` that returns ``edits.get(position)``, but
    subtrees without an edit are passed over whole (``shape`` from :func:`walk` on this same,
    unchanged payload says where each ends): an unchanged record, string or embedded JSON
    document costs one lookup instead of a walk.
    """
    src = payload if isinstance(payload, dict) else dict(payload)
    if not edits:
        return src
    return _Run(_unused, scan_blobs, shape, edits).protocol(src, "$", 0)


def _unused(leaf: Leaf) -> str | None:
    raise AssertionError("rewrite does not visit")


def has_user_data(kind: Kind, method: str | None, to_client: bool) -> bool:
    """Every message is walked (issue 13): any of them can carry personal data."""
    return True

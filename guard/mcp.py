"""MCP vocabulary: method names, eras, and what a message targets. No I/O.

Facts from the MCP specification revisions 2024-11-05 through 2025-11-25 ("legacy"
era, ``initialize`` handshake) and 2026-07-28 ("modern" era, per-request ``_meta``
with ``io.modelcontextprotocol/protocolVersion``, ``server/discover``).
"""

from __future__ import annotations

from typing import Any

from guard.jsonrpc import Message

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"

LEGACY_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSIONS = ("2026-07-28",)

# Client -> server requests.
INITIALIZE = "initialize"
PING = "ping"
SERVER_DISCOVER = "server/discover"
TOOLS_LIST = "tools/list"
TOOLS_CALL = "tools/call"
RESOURCES_LIST = "resources/list"
RESOURCES_TEMPLATES_LIST = "resources/templates/list"
RESOURCES_READ = "resources/read"
RESOURCES_SUBSCRIBE = "resources/subscribe"
RESOURCES_UNSUBSCRIBE = "resources/unsubscribe"
SUBSCRIPTIONS_LISTEN = "subscriptions/listen"
PROMPTS_LIST = "prompts/list"
PROMPTS_GET = "prompts/get"
COMPLETION_COMPLETE = "completion/complete"
LOGGING_SET_LEVEL = "logging/setLevel"

# Server -> client requests (legacy era only; modern carries them in InputRequiredResult).
SAMPLING_CREATE_MESSAGE = "sampling/createMessage"
ELICITATION_CREATE = "elicitation/create"
ROOTS_LIST = "roots/list"

CLIENT_REQUESTS = frozenset(
    {
        INITIALIZE,
        PING,
        SERVER_DISCOVER,
        TOOLS_LIST,
        TOOLS_CALL,
        RESOURCES_LIST,
        RESOURCES_TEMPLATES_LIST,
        RESOURCES_READ,
        RESOURCES_SUBSCRIBE,
        RESOURCES_UNSUBSCRIBE,
        SUBSCRIPTIONS_LISTEN,
        PROMPTS_LIST,
        PROMPTS_GET,
        COMPLETION_COMPLETE,
        LOGGING_SET_LEVEL,
    }
)
SERVER_REQUESTS = frozenset({PING, SAMPLING_CREATE_MESSAGE, ELICITATION_CREATE, ROOTS_LIST})

def is_known_method(method: str) -> bool:
    """True for methods defined by some MCP revision (``tasks/*`` and notifications included)."""
    return (
        method in CLIENT_REQUESTS
        or method in SERVER_REQUESTS
        or method.startswith("tasks/")
        or method.startswith("notifications/")
    )


def meta_of(params: dict[str, Any]) -> dict[str, Any]:
    """The ``_meta`` object of a params/result object (empty when absent or malformed)."""
    meta = params.get("_meta")
    return meta if isinstance(meta, dict) else {}


def protocol_version_of(message: Message) -> str | None:
    """The per-request protocol version of a modern-era request, if it carries one.

    2026-07-28 ``basic/lifecycle``: every modern request carries the version in ``_meta``;
    legacy requests never do.
    """
    version = meta_of(message.params).get(META_PROTOCOL_VERSION)
    return version if isinstance(version, str) else None


TARGETED_METHODS = frozenset(
    {TOOLS_CALL, PROMPTS_GET, RESOURCES_READ, RESOURCES_SUBSCRIBE, RESOURCES_UNSUBSCRIBE, COMPLETION_COMPLETE}
)
"""Client requests that always act on something: without a valid target they are malformed."""

REF_KEYS = {"ref/prompt": ("name", "uri"), "ref/resource": ("uri", "name")}
"""``completion/complete`` ref types (2025-11-25 ``server/utilities/completion``): the key
holding the target, and the other type's key, which a consistent ref does not carry."""


def completion_target(ref: Any) -> str | None:
    """The target of a ``completion/complete`` ``ref``, following its ``type``.

    ``ref/prompt`` -> ``ref.name`` (a ``PromptReference``); ``ref/resource`` -> ``ref.uri``
    (a ``ResourceTemplateReference``). Anything else -- no or an unknown ``type``, a ref
    carrying both ``name`` and ``uri`` (authorized as one, served as the other), a target
    that is not a string -- has no valid target (``None``), which the authorize stage denies.
    """
    if not isinstance(ref, dict):
        return None
    kind = ref.get("type")
    keys = REF_KEYS.get(kind) if isinstance(kind, str) else None
    if keys is None:
        return None
    key, other = keys
    if other in ref:
        return None
    value = ref.get(key)
    return value if isinstance(value, str) else None


def target_of(method: str | None, params: dict[str, Any]) -> str | None:
    """What a request acts on: tool name, resource URI, prompt name, completion ref.

    ``tools/call`` -> ``params.name``; ``prompts/get`` -> ``params.name``;
    ``resources/read|subscribe|unsubscribe`` -> ``params.uri``;
    ``completion/complete`` -> :func:`completion_target` of ``params.ref``. ``None`` for a
    method without a target, and for a :data:`TARGETED_METHODS` request whose target is
    missing or malformed.
    """
    if method in (TOOLS_CALL, PROMPTS_GET):
        name = params.get("name")
        return name if isinstance(name, str) else None
    if method in (RESOURCES_READ, RESOURCES_SUBSCRIBE, RESOURCES_UNSUBSCRIBE):
        uri = params.get("uri")
        return uri if isinstance(uri, str) else None
    if method == COMPLETION_COMPLETE:
        return completion_target(params.get("ref"))
    return None


def is_input_required(result: Any) -> bool:
    """True for a modern ``InputRequiredResult`` (``resultType: "input_required"``)."""
    return isinstance(result, dict) and result.get("resultType") == "input_required"

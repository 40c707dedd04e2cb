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


def target_of(method: str | None, params: dict[str, Any]) -> str | None:
    """What a request acts on: tool name, resource URI, prompt name, completion ref.

    ``tools/call`` -> ``params.name``; ``prompts/get`` -> ``params.name``;
    ``resources/read|subscribe|unsubscribe`` -> ``params.uri``;
    ``completion/complete`` -> ``params.ref.name`` (prompt ref) or ``params.ref.uri``
    (resource template ref). Anything else has no target.
    """
    if method in (TOOLS_CALL, PROMPTS_GET):
        name = params.get("name")
        return name if isinstance(name, str) else None
    if method in (RESOURCES_READ, RESOURCES_SUBSCRIBE, RESOURCES_UNSUBSCRIBE):
        uri = params.get("uri")
        return uri if isinstance(uri, str) else None
    if method == COMPLETION_COMPLETE:
        ref = params.get("ref")
        if isinstance(ref, dict):
            value = ref.get("name", ref.get("uri"))
            return value if isinstance(value, str) else None
    return None


def is_input_required(result: Any) -> bool:
    """True for a modern ``InputRequiredResult`` (``resultType: "input_required"``)."""
    return isinstance(result, dict) and result.get("resultType") == "input_required"

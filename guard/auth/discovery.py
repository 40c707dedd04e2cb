"""RFC 9728 OAuth 2.0 Protected Resource Metadata for guard's MCP endpoints.

An MCP client that gets a 401 reads ``resource_metadata`` from ``WWW-Authenticate``,
fetches this document, and learns which authorization server issues tokens for the
resource (MCP 2025-06-18+ ``basic/authorization``, "Authorization Server Location").

Per RFC 9728 section 3.1 the metadata URL of resource ``https://guard/mcp/NAME`` is
``https://guard/.well-known/oauth-protected-resource/mcp/NAME``; the document's
``resource`` must equal the resource identifier exactly (section 3.3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from guard.auth.settings import AuthSettings

WELL_KNOWN = "/.well-known/oauth-protected-resource"
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def public_base(settings: AuthSettings, headers: Mapping[str, str],
                base_url: str | None = None) -> str | None:
    """guard's public base URL: ``auth.resource``, else the request's, else ``http://<Host>``.

    WebSocket schemes are mapped to their HTTP counterparts. A ``Host`` header that is
    not a plain host[:port] is ignored (it would otherwise be reflected into a header).
    """
    if settings.resource is not None:
        return settings.resource
    if base_url:
        base = base_url.rstrip("/")
        if base.startswith("ws://"):
            return "http://" + base[5:]
        if base.startswith("wss://"):
            return "https://" + base[6:]
        return base
    host = headers.get("host", "")
    if host and _HOST.fullmatch(host):
        return f"http://{host}"
    return None


def resource_id(base: str, server: str | None) -> str:
    """The RFC 9728/RFC 8707 resource identifier of an endpoint."""
    return base if server is None else f"{base}/mcp/{quote(server, safe='')}"


def metadata_url(base: str, server: str | None) -> str:
    """Where the metadata of ``server`` is served (RFC 9728 section 3.1)."""
    return base + WELL_KNOWN + ("" if server is None else f"/mcp/{quote(server, safe='')}")


def metadata_document(settings: AuthSettings, server: str | None, base: str) -> dict[str, Any]:
    """The RFC 9728 section 2 document for one endpoint (or for guard as a whole)."""
    doc: dict[str, Any] = {
        "resource": resource_id(base.rstrip("/"), server),
        "authorization_servers": list(settings.authorization_servers_or_issuers()),
        "bearer_methods_supported": ["header"],
    }
    if settings.scopes_supported:
        doc["scopes_supported"] = list(settings.scopes_supported)
    return doc


def quoted(value: str) -> str:
    """A value made safe for an RFC 7235 quoted-string (no ``"`` or ``\\`` inside)."""
    return value.replace("\\", "%5C").replace('"', "%22")

"""Raw HTTP helpers for front-door tests: exact requests, so each test controls every header."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from guard import mcp

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED = str(ROOT / "tests/support/scripted_upstream.py")
ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"


def http(base: str) -> str:
    """``ws://host:port`` (what the guard fixtures yield) as ``http://host:port``."""
    return base.replace("ws://", "http://", 1)


def scripted_config(record: Path | None = None, **server: Any) -> dict[str, Any]:
    upstream: dict[str, Any] = {"command": sys.executable, "args": [SCRIPTED]}
    if record is not None:
        upstream["env"] = {"RECORD": str(record)}
    return {"upstreams": {"s": upstream}, "auth": {"anonymous_servers": ["s"]}, "server": server}


def legacy_init(request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}}


def modern_request(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    meta = {mcp.META_PROTOCOL_VERSION: MODERN, mcp.META_CLIENT_CAPABILITIES: {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": meta}}


def modern_headers(method: str, name: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": ACCEPT, "MCP-Protocol-Version": MODERN,
               "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    headers.update(extra)
    return headers


def post_headers(session: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": ACCEPT}
    if session is not None:
        headers["Mcp-Session-Id"] = session
        headers["MCP-Protocol-Version"] = "2025-11-25"
    headers.update(extra)
    return headers


@contextlib.asynccontextmanager
async def client(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=http(base), timeout=30) as c:
        yield c


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a response: its JSON body, or the last ``data:`` line of its SSE stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        import json

        data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        return dict(json.loads(data[-1]))
    return dict(response.json())


async def open_session(c: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None) -> str:
    """initialize + notifications/initialized; returns the Mcp-Session-Id."""
    r = await c.post(path, json=legacy_init(), headers={**post_headers(), **(headers or {})})
    assert r.status_code == 200, r.text
    session = r.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    r = await c.post(path, json=note, headers={**post_headers(session), **(headers or {})})
    assert r.status_code == 202, r.text
    return session

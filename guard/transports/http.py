"""Upstream over Streamable HTTP (MCP ``basic/transports``, 2025-03-26 and later).

One POST per message with ``Accept: application/json, text/event-stream``; the reply
is a single JSON body or an SSE stream scoped to that request. Legacy-era sessions
carry ``Mcp-Session-Id`` (captured from the ``initialize`` reply, sent on every later
request, and ended with DELETE on close) and ``MCP-Protocol-Version``; after
``notifications/initialized`` guard opens the optional GET stream for server-initiated
messages. Modern-era (2026-07-28) requests mirror routing fields into headers:
``MCP-Protocol-Version`` (from ``_meta``), ``Mcp-Method``, ``Mcp-Name`` (tool/prompt
name or resource URI) and ``Mcp-Param-*`` for tool arguments whose schema carries
``x-mcp-header``. Headers are computed from the message *as forwarded*, after any
stage rewrote it, so body and headers always agree.

Only the upstream's configured headers (its own credentials) are sent; nothing from
the client's handshake, in particular never the client's token (token passthrough is
forbidden by MCP ``basic/authorization``). With tracing on, a request also carries the W3C
``traceparent`` (and ``tracestate``) of guard's ``upstream`` span (:mod:`guard.tracing`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from typing import Any

import httpx

from guard import mcp
from guard.config import UpstreamSettings
from guard.errors import ParseError, UpstreamClosed, UpstreamUnavailable
from guard.jsonrpc import ErrorCode, Kind, Message, error_response, loads, serialize
from guard.tls import ssl_context_for
from guard.tracing import upstream_headers
from guard.transports.base import probe_tcp
from guard.transports.sse import iter_events

log = logging.getLogger("guard.upstream.http")

_NAME_KEYS = {mcp.TOOLS_CALL: "name", mcp.PROMPTS_GET: "name", mcp.RESOURCES_READ: "uri"}
_HEADER_SAFE = re.compile(r"^[\x20-\x7E]*$")
_SENTINEL = re.compile(r"^=\?base64\?.*\?=$")
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def encode_header_value(value: str) -> str:
    """Header-safe form of a mirrored value: verbatim if printable ASCII, else ``=?base64?...?=``."""
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not _SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def x_mcp_header_paths(schema: Any) -> dict[tuple[str, ...], str]:
    """Argument paths annotated with ``x-mcp-header`` in a tool's input schema (``properties`` chains)."""
    found: dict[tuple[str, ...], str] = {}
    stack: list[tuple[tuple[str, ...], Any]] = [((), schema)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        token = node.get("x-mcp-header")
        if path and isinstance(token, str) and _TOKEN.fullmatch(token):
            found[path] = token
        props = node.get("properties")
        if isinstance(props, dict):
            stack.extend(((*path, str(k)), v) for k, v in props.items())
    return found


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return None


class StreamableHttpUpstream:
    """A Streamable HTTP MCP server, one logical session per client connection."""

    def __init__(self, settings: UpstreamSettings, max_message_bytes: int, queue_size: int = 256) -> None:
        if settings.url is None:
            raise UpstreamUnavailable("no url configured")
        self._settings = settings
        self._url: str = settings.url
        self._incoming: asyncio.Queue[str | UpstreamClosed] = asyncio.Queue(maxsize=queue_size)
        # https:// with tls_* keys: custom CA / client certificate; None keeps httpx's default trust.
        self._tls = ssl_context_for(settings)
        self._client = httpx.AsyncClient(
            verify=self._tls if self._tls is not None else True,
            timeout=httpx.Timeout(settings.connect_timeout, read=None),
            headers=dict(settings.headers),
            follow_redirects=False,
        )
        self._session_id: str | None = None
        self._protocol_version: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._param_paths: dict[str, dict[tuple[str, ...], str]] = {}
        self._get_stream_opened = False
        self._closed = False
        self._transport_failures = 0
        """Consecutive POSTs that failed at the transport level; past ``reconnect_attempts`` the session ends."""

    async def start(self) -> None:
        try:
            await probe_tcp(self._url, self._settings.connect_timeout, self._tls)
        except (OSError, TimeoutError) as exc:
            raise UpstreamUnavailable(f"cannot reach {self._settings.name}: {type(exc).__name__}") from exc

    # Sending -------------------------------------------------------------------------

    def _headers_for(self, message: Message) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self._session_id is not None:
            headers["Mcp-Session-Id"] = self._session_id
        version = mcp.protocol_version_of(message) or self._protocol_version
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        method = message.method
        if method is not None:
            headers["Mcp-Method"] = method
            name_key = _NAME_KEYS.get(method)
            value = message.params.get(name_key) if name_key else None
            if isinstance(value, str):
                headers["Mcp-Name"] = encode_header_value(value)
            if method == mcp.TOOLS_CALL and isinstance(value, str):
                headers.update(self._param_headers(value, message.params.get("arguments")))
        headers.update(upstream_headers())  # W3C traceparent of guard's upstream span (tracing on)
        return headers

    def _param_headers(self, tool: str, arguments: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for path, token in self._param_paths.get(tool, {}).items():
            node: Any = arguments
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            rendered = _scalar(node)
            if rendered is not None:
                out[f"Mcp-Param-{token}"] = encode_header_value(rendered)
        return out

    async def send(self, text: str, message: Message) -> None:
        if self._closed:
            raise UpstreamClosed("upstream session closed")
        headers = self._headers_for(message)
        if message.kind is Kind.REQUEST and message.method != mcp.INITIALIZE:
            task = asyncio.create_task(self._post(text, message, headers))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        # Notifications, responses and initialize go out in order before anything after them.
        await self._post(text, message, headers)
        if message.method == "notifications/initialized" and not self._get_stream_opened:
            self._get_stream_opened = True
            task = asyncio.create_task(self._listen())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, text: str, message: Message, headers: dict[str, str]) -> None:
        """POST one message; whatever happens, a request gets its answer or an error for its id."""
        try:
            await self._exchange(text, message, headers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never a silently dead task holding an unanswered request
            log.exception("upstream %s: failed to handle a reply", self._settings.name)
            await self._answer_failed(message, f"upstream reply could not be handled ({type(exc).__name__})")

    async def _exchange(self, text: str, message: Message, headers: dict[str, str]) -> None:
        try:
            async with self._client.stream("POST", self._url, content=text, headers=headers) as resp:
                self._transport_failures = 0
                session_id = resp.headers.get("mcp-session-id")
                if session_id and message.method == mcp.INITIALIZE:
                    self._session_id = session_id
                if resp.status_code == 202:
                    return
                if resp.status_code == 404 and self._session_id is not None:
                    await self._fail("upstream session expired")
                    return
                if not 200 <= resp.status_code < 300:
                    await resp.aread()
                    await self._answer_failed(message, f"upstream answered HTTP {resp.status_code}",
                                              status=resp.status_code)
                    return
                await self._read_body(resp, message)
        except httpx.TransportError as exc:
            log.warning("upstream %s: %s", self._settings.name, type(exc).__name__)
            self._transport_failures += 1
            if self._transport_failures > self._settings.reconnect_attempts:
                await self._fail(f"upstream unreachable ({type(exc).__name__})")
            else:
                # Each POST is its own connection: answer this one and let the next try again.
                await self._answer_failed(message, f"upstream unreachable ({type(exc).__name__})",
                                          ErrorCode.UPSTREAM_UNAVAILABLE)

    async def _read_body(self, resp: httpx.Response, message: Message) -> None:
        """Hand every JSON-RPC message of the reply to the relay; a request always gets an answer.

        A JSON body holding one object is passed on as the upstream wrote it (decoded as UTF-8),
        so :func:`guard.jsonrpc.parse` reads numbers and strings exactly as on every other
        transport; only a JSON array (a 2025-03-26 batch reply) is split, with the same exact
        decoder. A reply that ends without answering the POSTed request (invalid JSON, an SSE
        stream that closes early) is answered -31011 here rather than left to time out.
        """
        answered = False
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "text/event-stream":
            async for event in iter_events(resp.aiter_lines()):
                if event.event == "message" and event.data.strip():
                    answered = await self._deliver(event.data, message) or answered
        else:
            body = await resp.aread()
            answered = await self._deliver_body(body, message)
        if message.kind is Kind.REQUEST and not answered:
            await self._answer_failed(message, "upstream reply did not answer the request")

    async def _deliver_body(self, body: bytes, message: Message) -> bool:
        if not body.strip():
            return False
        try:
            decoded = loads(body)
        except ParseError as exc:
            return exc.request_id is not None and await self._deliver(body.decode("utf-8", "replace"), message)
        if isinstance(decoded, dict):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:  # JSON in UTF-16/32: valid for json.loads, not for MCP
                return False
            return await self._deliver(text, message, decoded)
        answered = False
        for item in decoded if isinstance(decoded, list) else ():
            if isinstance(item, dict):
                answered = await self._deliver(serialize(item), message, item) or answered
        return answered

    async def _deliver(self, text: str, sent: Message, decoded: Any = None) -> bool:
        """Queue one message for the relay; True if it is the response to ``sent``."""
        if decoded is None:
            try:
                decoded = loads(text)
            except ParseError as exc:  # the relay refuses it too, and answers the id it names
                decoded = {"id": exc.request_id}
        if sent.method in (mcp.INITIALIZE, mcp.TOOLS_LIST):
            self._learn(decoded, sent)
        await self._incoming.put(text)
        return (sent.kind is Kind.REQUEST and isinstance(decoded, dict) and "method" not in decoded
                and decoded.get("id") == sent.id and type(decoded.get("id")) is type(sent.id))

    def _learn(self, reply: Any, sent: Message) -> None:
        """Remember the negotiated version (initialize) and x-mcp-header params (tools/list)."""
        if not isinstance(reply, dict) or reply.get("id") != sent.id:
            return
        result = reply.get("result")
        if not isinstance(result, dict):
            return
        if sent.method == mcp.INITIALIZE and isinstance(result.get("protocolVersion"), str):
            self._protocol_version = result["protocolVersion"]
        tools = result.get("tools")
        if sent.method == mcp.TOOLS_LIST and isinstance(tools, list):
            for tool in tools:
                if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                    paths = x_mcp_header_paths(tool.get("inputSchema"))
                    if paths:
                        self._param_paths[tool["name"]] = paths

    async def _answer_failed(self, message: Message, reason: str, code: int = ErrorCode.UPSTREAM_ERROR,
                             status: int | None = None) -> None:
        """Answer a request the upstream failed (-31004/-31011); ``data.status`` carries an HTTP status."""
        if message.kind is Kind.REQUEST and message.id is not None:
            text = "Upstream unavailable" if code == ErrorCode.UPSTREAM_UNAVAILABLE else "Upstream error"
            data: dict[str, Any] = {"reason": reason}
            if status is not None:
                data["status"] = status
            err = error_response(message.id, code, text, data)
            await self._incoming.put(serialize(err))
        else:
            log.warning("upstream %s: %s", self._settings.name, reason)

    async def _listen(self) -> None:
        """The optional GET stream for server-initiated messages (legacy sessions)."""
        headers = {"Accept": "text/event-stream"}
        if self._session_id is not None:
            headers["Mcp-Session-Id"] = self._session_id
        if self._protocol_version is not None:
            headers["MCP-Protocol-Version"] = self._protocol_version
        try:
            async with self._client.stream("GET", self._url, headers=headers) as resp:
                if resp.status_code != 200:
                    return
                async for event in iter_events(resp.aiter_lines()):
                    if event.event == "message" and event.data.strip():
                        await self._incoming.put(event.data)
        except httpx.TransportError:
            return

    async def _fail(self, reason: str) -> None:
        self._closed = True
        await self._incoming.put(UpstreamClosed(reason))

    async def receive(self) -> str:
        item = await self._incoming.get()
        if isinstance(item, UpstreamClosed):
            raise item
        return item

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session_id is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self._client.delete(self._url, headers={"Mcp-Session-Id": self._session_id}, timeout=2.0)
        await self._client.aclose()

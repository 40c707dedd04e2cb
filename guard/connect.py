"""``guard connect URL``: a local stdio MCP server that forwards to a remote guard.

For hosts that only launch commands (Claude Desktop's ``mcpServers`` config, any stdio
client): the host speaks MCP's stdio transport (newline-delimited JSON-RPC on stdin and
stdout, MCP ``basic/transports``) to this process, which speaks Streamable HTTP
(``http://``, ``https://``) or WebSocket (``ws://``, ``wss://``) to guard. Messages pass
through unchanged; guard does all the checking.

The token comes from ``--token-file`` (re-read when guard refuses it, so a rotated file
is picked up), ``--token-command`` (run without a shell; re-run when refused), or an
environment variable (``--token-env``, default ``GUARD_TOKEN``). There is deliberately no
``--token`` flag: a command line is visible to every user of the machine (``ps``).

Streamable HTTP details: the ``Mcp-Session-Id`` guard issues on ``initialize`` is sent on
every later request, with ``MCP-Protocol-Version``; after ``notifications/initialized``
a GET stream carries what the server sends on its own; an expired session (``404``) is
re-established by replaying the host's ``initialize`` handshake, transparently. 2026-07-28
requests get the ``Mcp-Method``/``Mcp-Name``/``Mcp-Param-*`` headers mirrored from the body
(the spec's client rules, as guard's own upstream transport does). On stdin EOF the
session is ended with DELETE.

Exit status and the one line on stderr that says why:

* 0 — the host closed stdin (normal end; answers to its last requests are still written,
  for up to 30 s, so ``... | guard connect URL`` works on both transports);
* 2 — usage: bad URL, no token available, unknown upstream (guard's 404 ``unknown_upstream``,
  on both transports);
* 3 — guard refused the token (401/403), after one refresh from the token source;
* 4 — guard cannot be reached;
* 5 — the connection to guard was lost after it worked.

Requests still waiting when the bridge exits are answered with a JSON-RPC error first,
so the host is never left hanging.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from guard import mcp
from guard.transports.http import encode_header_value, x_mcp_header_paths
from guard.transports.sse import iter_events

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4
EXIT_LOST = 5

BRIDGE_ERROR = -31004
"""JSON-RPC code for requests the bridge answers itself (guard unreachable / lost)."""
REFUSED_ERROR = -31003
"""JSON-RPC code for requests answered after guard refused the token."""
MAX_LINE = 64 * 1024 * 1024


class Exit(Exception):
    """End the bridge with ``code``; ``message`` goes to stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class TokenSource:
    """Where the bearer token comes from; :meth:`refresh` re-reads files and re-runs commands."""

    file: Path | None = None
    command: str | None = None
    env: str | None = None
    _token: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        if self.file is not None:
            return f"--token-file {self.file}"
        if self.command is not None:
            return "--token-command"
        return f"${self.env}" if self.env else "no token"

    def get(self) -> str | None:
        if self._token is None:
            self._token = self._load()
        return self._token

    def refresh(self) -> bool:
        """Load again; True if the source can yield a different token (file or command)."""
        if self.file is None and self.command is None:
            return False
        self._token = self._load()
        return True

    def _load(self) -> str | None:
        if self.file is not None:
            try:
                token = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise Exit(EXIT_USAGE, f"cannot read the token file {self.file}: {exc.strerror}") from None
            if not token:
                raise Exit(EXIT_USAGE, f"the token file {self.file} is empty")
            return token
        if self.command is not None:
            try:
                done = subprocess.run(shlex.split(self.command), capture_output=True, text=True, timeout=60,
                                      check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise Exit(EXIT_USAGE, f"the token command failed: {exc}") from None
            token = done.stdout.strip()
            if done.returncode != 0 or not token:
                raise Exit(EXIT_USAGE, f"the token command exited {done.returncode} without printing a token")
            return token
        if self.env:
            value = os.environ.get(self.env, "").strip()
            return value or None
        return None


def auth_headers(tokens: TokenSource) -> dict[str, str]:
    token = tokens.get()
    return {"Authorization": f"Bearer {token}"} if token else {}


class Stdio:
    """Newline-delimited JSON-RPC on this process's stdin and stdout."""

    def __init__(self, reader: asyncio.StreamReader, write: Callable[[bytes], None]) -> None:
        self._reader = reader
        self._write = write

    @classmethod
    async def open(cls) -> Stdio:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        out = sys.stdout.buffer

        def write(data: bytes) -> None:
            out.write(data)
            out.flush()

        return cls(reader, write)

    async def lines(self) -> AsyncIterator[str]:
        while True:
            line = await self._reader.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").strip()
            if text:
                yield text

    def send(self, text: str) -> None:
        self._write(text.replace("\n", " ").encode("utf-8") + b"\n")


def _error_line(request_id: Any, code: int, message: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


def _refusal_text(status: int, body: bytes, challenge: str | None) -> str:
    """guard's reason for a refusal: the JSON-RPC error message of the body, else the challenge."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        error = orjson.loads(body).get("error") or {}
        if isinstance(error.get("message"), str):
            return str(error["message"])
    if challenge and "error_description=" in challenge:
        return challenge.split('error_description="', 1)[1].split('"', 1)[0]
    text = body.decode("utf-8", "replace").strip()
    return text[:200] or f"HTTP {status}"


def _refusal_reason(body: bytes) -> str | None:
    """The stable reason code in a refusal's JSON-RPC error ``data`` (``unknown_upstream``, ...)."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        reason = (orjson.loads(body).get("error") or {}).get("data", {}).get("reason")
        return reason if isinstance(reason, str) else None
    return None


# Streamable HTTP -------------------------------------------------------------------------------

class HttpBridge:
    """stdio <-> Streamable HTTP (one POST per message; JSON or SSE answers; GET stream)."""

    def __init__(self, url: str, tokens: TokenSource, extra: dict[str, str], stdio: Stdio) -> None:
        self.url = url
        self.tokens = tokens
        self.extra = extra
        self.stdio = stdio
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self.initialize: str | None = None
        self.initialized: str | None = None
        self.param_paths: dict[str, dict[tuple[str, ...], str]] = {}
        self.pending: set[Any] = set()
        self.reached = False
        self.fatal: asyncio.Future[Exit] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        """The POSTs under way (the host's messages)."""
        self._listener: asyncio.Task[None] | None = None
        """The GET stream, once the host has sent ``notifications/initialized``."""
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), follow_redirects=False)
        self._reinit = asyncio.Lock()

    async def run(self) -> int:
        reader = asyncio.create_task(self._read_stdin())
        waiting: set[asyncio.Future[Any]] = {reader, self.fatal}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        code = EXIT_OK
        if self.fatal in done:
            failure = self.fatal.result()
            self._fail_pending(failure)
            reader.cancel()
            code = failure.code
            print(f"guard connect: {failure.message}", file=sys.stderr, flush=True)
        else:
            if self._tasks:  # the answers to the host's last messages, not the GET stream
                await asyncio.wait(set(self._tasks), timeout=30)
            if self._listener is not None:  # before the DELETE: its reconnection would open a new session
                self._listener.cancel()
            if self.fatal.done():
                failure = self.fatal.result()
                print(f"guard connect: {failure.message}", file=sys.stderr, flush=True)
                code = failure.code
            elif self.session_id is not None:
                with contextlib.suppress(httpx.HTTPError):
                    await self._client.delete(self.url, headers=self._headers(None), timeout=5.0)
        if self._listener is not None:
            self._listener.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self._client.aclose()
        return code

    def _die(self, failure: Exit) -> None:
        if not self.fatal.done():
            self.fatal.set_result(failure)

    def _fail_pending(self, failure: Exit) -> None:
        code = REFUSED_ERROR if failure.code == EXIT_REFUSED else BRIDGE_ERROR
        for request_id in list(self.pending):
            self.stdio.send(_error_line(request_id, code, failure.message))
        self.pending.clear()

    async def _read_stdin(self) -> None:
        async for line in self.stdio.lines():
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.stdio.send(_error_line(None, -32700, "Parse error"))
                continue
            if not isinstance(message, dict):
                self.stdio.send(_error_line(None, -32600, "Invalid Request: send one JSON-RPC object per line"))
                continue
            if message.get("method") == "initialize":
                self.initialize, self.session_id, self.protocol_version = line, None, None
            elif message.get("method") == "notifications/initialized":
                self.initialized = line
            if "method" in message and "id" in message:
                self.pending.add(message["id"])
            task = asyncio.create_task(self._post(line, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if message.get("method") == "initialize":
                await task  # later messages need its session id

    def _headers(self, message: dict[str, Any] | None) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream", **self.extra, **auth_headers(self.tokens)}
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
        params = message.get("params") if message is not None else None
        params = params if isinstance(params, dict) else {}
        modern = mcp.meta_of(params).get(mcp.META_PROTOCOL_VERSION)
        if isinstance(modern, str):
            headers["MCP-Protocol-Version"] = modern
            headers.update(self._mirrored(message or {}, params))
        elif self.protocol_version is not None:
            headers["MCP-Protocol-Version"] = self.protocol_version
        return headers

    def _mirrored(self, message: dict[str, Any], params: dict[str, Any]) -> dict[str, str]:
        """2026-07-28 ``Mcp-Method``/``Mcp-Name``/``Mcp-Param-*`` from the body (``streamable-http`` spec)."""
        method = message.get("method")
        if not isinstance(method, str):
            return {}
        headers = {"Mcp-Method": method}
        key = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
        value = params.get(key) if key else None
        if isinstance(value, str):
            headers["Mcp-Name"] = encode_header_value(value)
        if method == "tools/call" and isinstance(value, str):
            arguments = params.get("arguments")
            for path, token in self.param_paths.get(value, {}).items():
                node: Any = arguments
                for part in path:
                    node = node.get(part) if isinstance(node, dict) else None
                if isinstance(node, bool):
                    headers[f"Mcp-Param-{token}"] = "true" if node else "false"
                elif isinstance(node, str | int):
                    headers[f"Mcp-Param-{token}"] = encode_header_value(str(node))
        return headers

    async def _post(self, line: str, message: dict[str, Any], *, retried: bool = False) -> None:
        request_id = message.get("id") if "method" in message else None
        try:
            async with self._client.stream("POST", self.url, content=line.encode("utf-8"),
                                           headers={"Content-Type": "application/json", **self._headers(message)}
                                           ) as resp:
                self.reached = True
                if resp.status_code in (401, 403):
                    body = await resp.aread()
                    if not retried and self.tokens.refresh():
                        await self._post(line, message, retried=True)
                        return
                    reason = _refusal_text(resp.status_code, body, resp.headers.get("www-authenticate"))
                    self._die(Exit(EXIT_REFUSED, f"guard refused the token from {self.tokens.describe()} "
                                                 f"({resp.status_code}): {reason}"))
                    return
                if resp.status_code == 404 and resp.headers.get("content-type", "").startswith("application/json"):
                    body = await resp.aread()
                    if _refusal_reason(body) == "unknown_upstream":
                        self._die(Exit(EXIT_USAGE, f"guard has no upstream at {self.url}: "
                                                   f"{_refusal_text(404, body, None)}"))
                        return  # otherwise (an expired session, ...) the read body is read again below
                if resp.status_code == 404 and self.session_id is not None and message.get("method") != "initialize":
                    await resp.aread()
                    if not retried and await self._reinitialize():
                        await self._post(line, message, retried=True)
                    else:
                        self._die(Exit(EXIT_LOST, "guard ended the session and it could not be re-established"))
                    return
                if message.get("method") == "initialize" and resp.headers.get("mcp-session-id"):
                    self.session_id = resp.headers["mcp-session-id"]
                await self._answer(resp, message, request_id)
        except httpx.TransportError as exc:
            if not self.reached:
                self._die(Exit(EXIT_UNREACHABLE, f"cannot reach guard at {self.url} ({type(exc).__name__})"))
            else:
                self._die(Exit(EXIT_LOST, f"lost the connection to guard at {self.url} ({type(exc).__name__})"))
            return
        if message.get("method") == "notifications/initialized" and self._listener is None and self.session_id:
            self._listener = asyncio.create_task(self._listen())

    async def _answer(self, resp: httpx.Response, message: dict[str, Any], request_id: Any) -> None:
        if resp.status_code == 202:
            await resp.aread()
            return
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "text/event-stream":
            async for event in iter_events(resp.aiter_lines()):
                if event.event == "message" and event.data.strip():
                    self._deliver(event.data, message)
            if request_id is not None and request_id in self.pending:
                self.pending.discard(request_id)
                self.stdio.send(_error_line(request_id, BRIDGE_ERROR, "guard closed the stream before answering"))
            return
        body = (await resp.aread()).decode("utf-8", "replace").strip()
        if request_id is None:
            if resp.status_code >= 400:
                print(f"guard connect: guard refused a message ({resp.status_code}): "
                      f"{_refusal_text(resp.status_code, body.encode(), None)}", file=sys.stderr, flush=True)
            return
        try:
            reply = orjson.loads(body)
        except orjson.JSONDecodeError:
            reply = None
        if isinstance(reply, dict) and ("result" in reply or "error" in reply):
            reply["id"] = request_id
            self._deliver(json.dumps(reply), message)
        else:
            self.pending.discard(request_id)
            self.stdio.send(_error_line(request_id, BRIDGE_ERROR, f"guard answered HTTP {resp.status_code}"))

    def _deliver(self, text: str, sent: dict[str, Any]) -> None:
        try:
            reply = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        if isinstance(reply, dict) and "method" not in reply and reply.get("id") == sent.get("id"):
            self.pending.discard(reply.get("id"))
            self._learn(reply, sent)
        self.stdio.send(text)

    def _learn(self, reply: dict[str, Any], sent: dict[str, Any]) -> None:
        result = reply.get("result")
        if not isinstance(result, dict):
            return
        if sent.get("method") == "initialize" and isinstance(result.get("protocolVersion"), str):
            self.protocol_version = result["protocolVersion"]
        if sent.get("method") == "tools/list" and isinstance(result.get("tools"), list):
            for tool in result["tools"]:
                if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                    self.param_paths[tool["name"]] = x_mcp_header_paths(tool.get("inputSchema"))

    async def _reinitialize(self) -> bool:
        """Replay the host's handshake for a new session (the old one expired); True on success."""
        async with self._reinit:
            if self.initialize is None:
                return False
            old = self.session_id
            self.session_id = None
            try:
                resp = await self._client.post(self.url, content=self.initialize.encode("utf-8"),
                                               headers={"Content-Type": "application/json", **self._headers(None)})
            except httpx.TransportError:
                return False
            if resp.status_code != 200 or not resp.headers.get("mcp-session-id"):
                self.session_id = old
                return False
            self.session_id = resp.headers["mcp-session-id"]
            if self.initialized is not None:
                with contextlib.suppress(httpx.TransportError):
                    await self._client.post(self.url, content=self.initialized.encode("utf-8"),
                                            headers={"Content-Type": "application/json", **self._headers(None)})
            print("guard connect: the session expired; re-established", file=sys.stderr, flush=True)
            return True

    async def _listen(self) -> None:
        """The GET stream for server-initiated messages; reconnects while guard is there."""
        failures = 0
        while failures < 3:
            try:
                async with self._client.stream("GET", self.url, headers={**self._headers(None),
                                                                         "Accept": "text/event-stream"}) as resp:
                    if resp.status_code == 405:
                        return
                    if resp.status_code == 404 and await self._reinitialize():
                        continue
                    if resp.status_code != 200:
                        failures += 1
                        await asyncio.sleep(0.5)
                        continue
                    failures = 0
                    async for event in iter_events(resp.aiter_lines()):
                        if event.event == "message" and event.data.strip():
                            self.stdio.send(event.data)
            except httpx.TransportError:
                failures += 1
                await asyncio.sleep(0.5)
        self._die(Exit(EXIT_LOST, f"lost the connection to guard at {self.url}"))


# WebSocket -------------------------------------------------------------------------------------

async def run_websocket(url: str, tokens: TokenSource, extra: dict[str, str], stdio: Stdio) -> int:
    """stdio <-> WebSocket (subprotocol ``mcp``, one JSON-RPC message per text frame)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

    for attempt in range(2):
        try:
            ws = await connect(url, subprotocols=["mcp"], additional_headers={**extra, **auth_headers(tokens)},  # type: ignore[list-item]
                               open_timeout=10, max_size=MAX_LINE, compression=None)
            break
        except InvalidStatus as exc:
            status = exc.response.status_code
            reason = _refusal_text(status, bytes(exc.response.body or b""),
                                   exc.response.headers.get("WWW-Authenticate"))
            if status in (401, 403):
                if attempt == 0 and tokens.refresh():
                    continue
                raise Exit(EXIT_REFUSED, f"guard refused the token from {tokens.describe()} ({status}): "
                                         f"{reason}") from None
            code = EXIT_USAGE if status == 404 else EXIT_UNREACHABLE
            raise Exit(code, f"guard refused the connection ({status}): {reason}") from None
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise Exit(EXIT_UNREACHABLE, f"cannot reach guard at {url} ({type(exc).__name__})") from None
    pending: set[Any] = set()
    answered = asyncio.Event()  # set whenever no request is waiting for its answer

    async def upward() -> None:
        async for line in stdio.lines():
            with contextlib.suppress(orjson.JSONDecodeError):
                message = orjson.loads(line)
                if isinstance(message, dict) and "method" in message and "id" in message:
                    pending.add(message["id"])
                    answered.clear()
            await ws.send(line)

    async def downward() -> None:
        async for frame in ws:
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            with contextlib.suppress(orjson.JSONDecodeError):
                message = orjson.loads(text)
                if isinstance(message, dict) and "method" not in message:
                    pending.discard(message.get("id"))
            stdio.send(text)
            if not pending:
                answered.set()

    up = asyncio.create_task(upward())
    down = asyncio.create_task(downward())
    try:
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and up.exception() is None and pending and not down.done():
            # The host closed stdin after its last request (``... | guard connect URL``): its
            # answers still go to stdout, as over HTTP, within the same 30 s.
            drained = asyncio.create_task(answered.wait())
            await asyncio.wait({down, drained}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
            done = {up, down} if down.done() else {up}
    finally:
        for task in (up, down):
            task.cancel()
    if up in done and up.exception() is None and not (down in done and pending):
        with contextlib.suppress(ConnectionClosed):
            await ws.close()
        return EXIT_OK
    detail = f"{ws.close_code} {ws.close_reason or ''}".strip() if ws.close_code is not None else "no close frame"
    for request_id in pending:
        stdio.send(_error_line(request_id, BRIDGE_ERROR, f"guard closed the connection ({detail})"))
    with contextlib.suppress(ConnectionClosed):
        await ws.close()
    raise Exit(EXIT_LOST, f"guard closed the connection ({detail})")


# CLI -------------------------------------------------------------------------------------------

def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


async def _main(args: argparse.Namespace) -> int:
    scheme = urlsplit(args.url).scheme
    if scheme not in ("http", "https", "ws", "wss") or not urlsplit(args.url).hostname:
        raise Exit(EXIT_USAGE, f"URL must be http(s)://HOST/mcp/NAME or ws(s)://HOST/mcp/NAME, not {args.url!r}")
    chosen = [x for x in (args.token_file, args.token_command, args.token_env) if x]
    if len(chosen) > 1:
        raise Exit(EXIT_USAGE, "give at most one of --token-file, --token-command, --token-env")
    tokens = TokenSource(file=Path(args.token_file).expanduser() if args.token_file else None,
                         command=args.token_command, env=args.token_env or "GUARD_TOKEN")
    if (args.token_file or args.token_command) and tokens.get() is None:
        raise Exit(EXIT_USAGE, "no token")
    extra = dict(args.header)
    stdio = await Stdio.open()
    if scheme in ("ws", "wss"):
        return await run_websocket(args.url, tokens, extra, stdio)
    return await HttpBridge(args.url, tokens, extra, stdio).run()


def cmd_connect(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(args))
    except Exit as exc:
        print(f"guard connect: {exc.message}", file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "connect", help="stdio MCP server that forwards to a remote guard (for hosts that launch commands)",
        description="Speak MCP over stdio to the host that launched this command and Streamable HTTP "
                    "(http://, https://) or WebSocket (ws://, wss://) to guard. Exit status: 0 stdin closed, "
                    "2 usage, 3 token refused, 4 guard unreachable, 5 connection lost.")
    p.add_argument("url", help="guard endpoint, e.g. https://guard.example.com/mcp/demo")
    p.add_argument("--token-file", help="file holding the bearer token (re-read if guard refuses it)")
    p.add_argument("--token-command", help="command that prints the bearer token (run without a shell)")
    p.add_argument("--token-env", help="environment variable holding the bearer token (default GUARD_TOKEN)")
    p.add_argument("--header", action="append", default=[], type=_parse_header,
                   help="extra request header 'Name: value' (repeatable), e.g. for a proxy in front of guard")
    p.set_defaults(func=cmd_connect)

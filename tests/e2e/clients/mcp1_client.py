"""Drive an MCP server with the official Python SDK **1.x** and print JSON results.

WebSocket (``ws://``: 1.x ``websocket_client``), Streamable HTTP (``http://``: 1.x
``streamablehttp_client(url, headers=...)``) or, with ``--sse``, the 2024-11-05 HTTP+SSE
transport (1.x ``sse_client``).

Runs in the second venv (``.venv-mcp1``: ``mcp==1.30.0`` + ``websockets``), because mcp 1.x, the
last Python SDK with a WebSocket transport, cannot be installed beside mcp 2.x::

    .venv-mcp1/bin/python tests/e2e/clients/mcp1_client.py ws://127.0.0.1:PORT/mcp/NAME \
        [--header 'Authorization: Bearer TOKEN']... [--script steps.json] [--timeout 60] < steps.json

The script (stdin unless ``--script``) is the step format shared with ``direct.py`` and
``node/client.mjs`` (see ``tests/e2e/README.md``). The session is always legacy era (1.x only
knows the ``initialize`` handshake, up to protocol 2025-11-25). Sampling, elicitation and roots
requests are answered deterministically (:mod:`answers`). Output, one JSON document on stdout::

    {"server": {"protocolVersion", "serverInfo", "capabilities", "instructions"?},
     "results": [{"op", "id"?, "result" | "error"}...],
     "requests": [{"method", "params", "response"}...],   # server->client requests answered
     "notifications": [{"method", "params"}...],
     "transport": "mcp1" | "copy" | "http" | "sse", "close": {"code", "reason"}?}

or ``{"error": {"code", "message", "data"}}`` when the connection or handshake fails (exit 1; a
rejected WebSocket handshake gives ``data.status``, the HTTP status). If the connection dies after
the handshake, the document keeps the completed steps and gains a top-level ``"error"`` (with
``data.close_code``/``close_reason`` when the peer sent a close frame; exit 1). Errors of single
steps are ``{"op", "error": {"code", "message", "data"}}`` entries and do not change the exit code.

Headers: 1.x ``websocket_client(url)`` takes no headers. Without ``--header`` the official
transport is used unchanged; with ``--header`` (or ``--copy-transport``) the script uses a copy of
that transport, identical (``mcp`` subprotocol, one JSON-RPC message per text frame, same
serialisation) except that it passes the headers to ``websockets.connect`` and reports the close
code/reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from mcp.shared.message import SessionMessage
from pydantic import AnyUrl, BaseModel, ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import answers as _answers  # shared with direct.py; stdlib only


def dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        out = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        # 1.x wraps unions in RootModel: unwrap to the wire object.
        return out["root"] if isinstance(out, dict) and set(out) == {"root"} else out
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    return value


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def error_json(exc: BaseException) -> dict[str, Any]:
    """``{"error": {"code", "message", "data"}}`` for any failure (exception groups unwrapped)."""
    leaves = _leaves(exc)
    leaf = next((e for e in leaves if isinstance(e, McpError)), leaves[0])
    if isinstance(leaf, McpError):
        return {"error": {"code": leaf.error.code, "message": leaf.error.message, "data": leaf.error.data}}
    data: dict[str, Any] = {"exception": type(leaf).__name__}
    response = getattr(leaf, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:  # websockets InvalidStatus: the handshake was refused
        data["status"] = status
    rcvd = getattr(leaf, "rcvd", None)
    if rcvd is not None:  # websockets ConnectionClosed
        data["close_code"] = rcvd.code
        data["close_reason"] = rcvd.reason
    return {"error": {"code": None, "message": str(leaf), "data": data}}


@asynccontextmanager
async def copied_websocket_client(
    url: str, headers: list[tuple[str, str]], close: dict[str, Any]
) -> AsyncGenerator[tuple[Any, Any], None]:
    """mcp 1.x ``websocket_client`` plus ``additional_headers``; records the close frame in ``close``."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Subprotocol

    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    async with connect(url, subprotocols=[Subprotocol("mcp")], additional_headers=headers) as ws:

        async def reader() -> None:
            async with read_writer:
                try:
                    async for raw in ws:
                        try:
                            parsed = types.JSONRPCMessage.model_validate_json(raw)
                            await read_writer.send(SessionMessage(parsed))
                        except ValidationError as exc:
                            await read_writer.send(exc)
                except ConnectionClosed:
                    pass
                finally:
                    if ws.close_code is not None:
                        close.update(code=ws.close_code, reason=ws.close_reason)

        async def writer() -> None:
            async with write_reader:
                async for message in write_reader:
                    payload = message.message.model_dump(by_alias=True, mode="json", exclude_none=True)
                    try:
                        await ws.send(json.dumps(payload))
                    except ConnectionClosed:
                        return

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            yield read_stream, write_stream
            tg.cancel_scope.cancel()
    if ws.close_code is not None:
        close.update(code=ws.close_code, reason=ws.close_reason)


class Runner:
    """One connection: callbacks answer deterministically and capture what the server sent."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []

    async def sampling(self, _ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        wire = dump(params)
        reply = _answers.sampling_reply(wire, self.answers)
        self.requests.append({"method": "sampling/createMessage", "params": wire, "response": reply})
        return types.CreateMessageResult.model_validate(reply)

    async def elicitation(self, _ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        wire = dump(params)
        reply = _answers.elicitation_reply(wire, self.answers)
        self.requests.append({"method": "elicitation/create", "params": wire, "response": reply})
        return types.ElicitResult.model_validate(reply)

    async def roots(self, _ctx: Any) -> types.ListRootsResult:
        reply = _answers.roots_reply(self.answers)
        self.requests.append({"method": "roots/list", "params": {}, "response": reply})
        return types.ListRootsResult.model_validate(reply)

    async def on_message(self, message: Any) -> None:
        if isinstance(message, types.ServerNotification):
            wire = dump(message)
            wire.pop("jsonrpc", None)  # same shape as the other clients: {"method", "params"}
            self.notifications.append(wire)
        elif isinstance(message, Exception):
            self.notifications.append({"method": "<exception>", "params": {"message": str(message)}})

    async def step(self, session: ClientSession, step: dict[str, Any]) -> dict[str, Any]:
        op = step.get("op")
        entry: dict[str, Any] = {"op": op}
        if "id" in step:
            entry["id"] = step["id"]
        try:
            entry["result"] = dump(await self._run(session, op, step))
        except Exception as exc:
            entry["error"] = error_json(exc)["error"]
        return entry

    async def _run(self, session: ClientSession, op: Any, step: dict[str, Any]) -> Any:
        if op == "list_tools":
            return await session.list_tools()
        if op == "list_resources":
            return await session.list_resources()
        if op == "list_resource_templates":
            return await session.list_resource_templates()
        if op == "list_prompts":
            return await session.list_prompts()
        if op == "call_tool":

            async def on_progress(_p: float, _t: float | None, _m: str | None) -> None:
                return None  # the notification itself reaches on_message

            timeout = step.get("timeout")
            return await session.call_tool(
                step["name"],
                step.get("arguments") or {},
                read_timeout_seconds=timedelta(seconds=timeout) if timeout else None,
                progress_callback=on_progress if step.get("progress") else None,
                meta=step.get("meta"),
            )
        if op == "read_resource":
            return await session.read_resource(AnyUrl(step["uri"]))
        if op == "get_prompt":
            return await session.get_prompt(step["name"], step.get("arguments"))
        if op == "ping":
            return await session.send_ping()
        if op == "set_logging_level":
            return await session.set_logging_level(step["level"])
        if op == "subscribe_resource":
            return await session.subscribe_resource(AnyUrl(step["uri"]))
        if op == "unsubscribe_resource":
            return await session.unsubscribe_resource(AnyUrl(step["uri"]))
        if op == "complete":
            ref = step["ref"]
            if ref.get("type") == "ref/prompt":
                return await session.complete(types.PromptReference.model_validate(ref), step["argument"])
            return await session.complete(types.ResourceTemplateReference.model_validate(ref), step["argument"])
        if op == "sleep":
            await anyio.sleep(float(step.get("seconds", 0.1)))
            return {}
        raise ValueError(f"unknown op: {op!r}")


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"header must look like 'Name: value', got {text!r}")
    return name.strip(), value.strip()


async def _session(runner: Runner, spec: dict[str, Any], transport: Any, out: dict[str, Any]) -> None:
    """Handshake, then run the steps; fills ``out`` as it goes so a failure keeps what completed."""
    async with transport as streams:
        read, write = streams[0], streams[1]  # streamablehttp_client adds a get_session_id callback
        async with ClientSession(
            read,
            write,
            sampling_callback=runner.sampling,
            elicitation_callback=runner.elicitation,
            list_roots_callback=runner.roots,
            message_handler=runner.on_message,
        ) as session:
            init = await session.initialize()
            server: dict[str, Any] = {
                "protocolVersion": init.protocolVersion,
                "serverInfo": dump(init.serverInfo),
                "capabilities": dump(init.capabilities),
            }
            if init.instructions is not None:
                server["instructions"] = init.instructions
            results: list[dict[str, Any]] = []
            out.update(server=server, results=results)
            for step in spec.get("steps", []):
                results.append(await runner.step(session, step))


async def run(
    url: str, script: Any, headers: list[tuple[str, str]], copy: bool, timeout: float = 60.0, sse: bool = False
) -> dict[str, Any]:
    """Connect to ``url``, run ``script`` within ``timeout`` seconds, and return the output document."""
    spec = {"steps": script} if isinstance(script, list) else dict(script)
    runner = Runner(spec.get("answers") or {})
    close: dict[str, Any] = {}
    use_copy = (copy or bool(headers)) and url.startswith(("ws://", "wss://"))
    kind = "copy" if use_copy else "mcp1"
    if url.startswith(("http://", "https://")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if sse:
                from mcp.client.sse import sse_client

                transport = sse_client(url, headers=dict(headers))
                kind = "sse"
            else:
                from mcp.client.streamable_http import streamablehttp_client

                transport = streamablehttp_client(url, headers=dict(headers))
                kind = "http"
    elif use_copy:
        transport = copied_websocket_client(url, headers, close)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from mcp.client.websocket import websocket_client

            transport = websocket_client(url)
    out: dict[str, Any] = {}
    try:
        with anyio.fail_after(timeout):
            await _session(runner, spec, transport, out)
    except Exception as exc:
        failure = error_json(exc)
        if isinstance(exc, TimeoutError):
            failure["error"]["message"] = f"timed out after {timeout}s"
        if close:
            failure["error"]["data"].setdefault("close_code", close.get("code"))
            failure["error"]["data"].setdefault("close_reason", close.get("reason"))
        if not out:
            return failure
        out["error"] = failure["error"]  # the connection died mid-script: keep what completed
    out.update(requests=runner.requests, notifications=runner.notifications)
    out["transport"] = kind
    if close:
        out["close"] = close
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="ws(s):// (WebSocket) or http(s):// (Streamable HTTP, or HTTP+SSE with --sse)")
    parser.add_argument("--sse", action="store_true", help="http(s):// URL speaks the 2024-11-05 HTTP+SSE transport")
    parser.add_argument("--header", action="append", default=[], type=parse_header, help="'Name: value'")
    parser.add_argument("--script", help="step script file (default: stdin)")
    parser.add_argument("--copy-transport", action="store_true", help="use the header-capable copy")
    parser.add_argument("--timeout", type=float, default=60.0, help="overall seconds (default 60)")
    args = parser.parse_args(argv)
    script = json.loads(Path(args.script).read_text() if args.script else sys.stdin.read())
    out = anyio.run(run, args.url, script, args.header, args.copy_transport, args.timeout, args.sse)
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())

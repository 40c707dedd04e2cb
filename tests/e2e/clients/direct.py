"""Talk to an MCP server straight, with the official Python SDK 2.x, and get plain JSON back.

The e2e tests compare what a client sees *through guard* with what it sees *direct*; this module is
the "direct" side for Python (main venv, ``mcp`` 2.x). It connects with ``mcp.Client`` to a stdio
command (:class:`mcp.StdioServerParameters`) or a Streamable HTTP URL, in either protocol era
(``mode="legacy"`` for the initialize handshake, ``"2026-07-28"`` pinned modern, ``"auto"`` probes),
answers sampling / elicitation / roots deterministically (:mod:`answers`), captures what the server
sent back, and renders every result as wire JSON
(``model_dump(mode="json", by_alias=True, exclude_none=True)``).

Usable three ways:

* helpers: ``async with connect(demo_params()) as session: await call_tool(session, "echo", {...})``
  (every helper returns JSON, and an MCP error as ``{"error": {"code", "message", "data"}}``);
* the shared step-script runner :func:`run_script` (same script format as ``mcp1_client.py`` and
  ``node/client.mjs``, documented in ``tests/e2e/README.md``);
* a CLI: ``python tests/e2e/clients/direct.py --stdio python -m guard.demo < script.json`` or
  ``... --url http://127.0.0.1:PORT/mcp``.

Deprecated-in-2026 calls (``ping``, ``logging/setLevel``, ``resources/subscribe``) are made with the
SDK's ``MCPDeprecationWarning`` silenced, so they work under pytest's ``filterwarnings = error``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client, MCPError, StdioServerParameters
from mcp import types as t
from mcp.client._transport import Transport
from mcp.client.context import ClientRequestContext
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import BaseModel

try:
    from . import answers as _answers
except ImportError:  # run as a script: answers.py sits beside this file
    import answers as _answers  # type: ignore[no-redef,import-not-found]

REPO_ROOT = Path(__file__).resolve().parents[3]

Target = str | StdioServerParameters | Transport
"""A Streamable HTTP URL, stdio launch parameters, or any SDK transport (e.g. guard's WebSocket client)."""


def dump(value: Any) -> Any:
    """Wire JSON for an SDK model (or a list of them); plain JSON passes through."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list | tuple):
        return [dump(v) for v in value]
    return value


def error_json(exc: BaseException) -> dict[str, Any]:
    """``{"error": {"code", "message", "data"}}`` for an MCP error or any other failure."""
    if isinstance(exc, MCPError):
        return {"error": {"code": exc.code, "message": exc.message, "data": exc.data}}
    return {"error": {"code": None, "message": str(exc), "data": {"exception": type(exc).__name__}}}


def demo_params(record: Path | None = None, env: Mapping[str, str] | None = None) -> StdioServerParameters:
    """Launch parameters for the bundled demo server (``python -m guard.demo``) in this venv.

    ``record`` sets ``GUARD_DEMO_RECORD`` so the server logs every request it receives.
    """
    extra = dict(env or {})
    if record is not None:
        extra["GUARD_DEMO_RECORD"] = str(record)
    return StdioServerParameters(command=sys.executable, args=["-m", "guard.demo"], env=extra, cwd=str(REPO_ROOT))


def everything_params() -> StdioServerParameters:
    """Launch parameters for ``@modelcontextprotocol/server-everything`` over stdio (needs ``npm ci``)."""
    entry = REPO_ROOT / "tests/e2e/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
    return StdioServerParameters(command="node", args=[str(entry), "stdio"], cwd=str(REPO_ROOT))


@dataclass
class Capture:
    """What the server sent the client besides responses, in arrival order (wire JSON)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    """Server->client requests answered by the callbacks: ``{"method", "params", "response"}``.
    In the 2026-07-28 era these are the ``inputRequests`` of an ``InputRequiredResult``."""

    notifications: list[dict[str, Any]] = field(default_factory=list)
    """``{"method", "params"}`` of every server notification (logging, progress, list_changed, ...)."""


@dataclass
class Session:
    """A connected client plus its capture and answers."""

    client: Client
    capture: Capture
    answers: dict[str, Any]


def _callbacks(capture: Capture, answers: dict[str, Any]) -> dict[str, Any]:
    async def sampling(_ctx: ClientRequestContext, params: t.CreateMessageRequestParams) -> t.CreateMessageResult:
        wire = dump(params)
        reply = _answers.sampling_reply(wire, answers)
        capture.requests.append({"method": "sampling/createMessage", "params": wire, "response": reply})
        return t.CreateMessageResult.model_validate(reply)

    async def elicitation(_ctx: ClientRequestContext, params: t.ElicitRequestParams) -> t.ElicitResult:
        wire = dump(params)
        reply = _answers.elicitation_reply(wire, answers)
        capture.requests.append({"method": "elicitation/create", "params": wire, "response": reply})
        return t.ElicitResult.model_validate(reply)

    async def roots(_ctx: ClientRequestContext) -> t.ListRootsResult:
        reply = _answers.roots_reply(answers)
        capture.requests.append({"method": "roots/list", "params": {}, "response": reply})
        return t.ListRootsResult.model_validate(reply)

    async def on_message(message: Any) -> None:
        if isinstance(message, BaseModel):
            capture.notifications.append(dump(message))
        elif isinstance(message, Exception):
            capture.notifications.append({"method": "<exception>", "params": {"message": str(message)}})

    return {
        "sampling_callback": sampling,
        "elicitation_callback": elicitation,
        "list_roots_callback": roots,
        "message_handler": on_message,
    }


@asynccontextmanager
async def connect(
    target: Target,
    *,
    mode: str = "auto",
    answers: dict[str, Any] | None = None,
    log_level: str | None = None,
    timeout: float = 30.0,
) -> AsyncIterator[Session]:
    """Connect straight to ``target``; response caching is off so every call reaches the server.

    ``log_level`` opts in to ``notifications/message`` on 2026-07-28 connections (no effect on
    legacy ones, where the server logs unconditionally or per ``logging/setLevel``).
    """
    capture = Capture()
    cfg = dict(answers or {})
    client = Client(
        target,
        mode=mode,
        read_timeout_seconds=timeout,
        log_level=log_level,  # type: ignore[arg-type]
        cache=None,
        **_callbacks(capture, cfg),
    )
    async with client:
        yield Session(client=client, capture=capture, answers=cfg)


def server_info(session: Session) -> dict[str, Any]:
    """Negotiated version, server info, capabilities and instructions (JSON)."""
    client = session.client
    info: dict[str, Any] = {
        "protocolVersion": client.protocol_version,
        "capabilities": dump(client.server_capabilities),
    }
    if client.server_info is not None:
        info["serverInfo"] = dump(client.server_info)
    if client.instructions is not None:
        info["instructions"] = client.instructions
    return info


async def _guard(coro: Any) -> Any:
    try:
        return dump(await coro)
    except Exception as exc:  # every failure becomes JSON: the caller compares shapes
        return error_json(exc)


async def list_tools(session: Session) -> Any:
    return await _guard(session.client.list_tools())


async def list_resources(session: Session) -> Any:
    return await _guard(session.client.list_resources())


async def list_resource_templates(session: Session) -> Any:
    return await _guard(session.client.list_resource_templates())


async def list_prompts(session: Session) -> Any:
    return await _guard(session.client.list_prompts())


async def call_tool(
    session: Session, name: str, arguments: dict[str, Any] | None = None, *, progress: bool = False
) -> Any:
    """``tools/call``; with ``progress=True`` a progress token is sent (updates land in the capture)."""

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        return None  # the SDK also hands every notifications/progress to the message handler

    callback: ProgressFnT | None = on_progress if progress else None
    return await _guard(session.client.call_tool(name, arguments or {}, progress_callback=callback))


async def read_resource(session: Session, uri: str) -> Any:
    return await _guard(session.client.read_resource(uri))


async def get_prompt(session: Session, name: str, arguments: dict[str, str] | None = None) -> Any:
    return await _guard(session.client.get_prompt(name, arguments))


async def _deprecated(coro_factory: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        coro = coro_factory()
    return await _guard(coro)


async def run_step(session: Session, step: Mapping[str, Any]) -> dict[str, Any]:
    """Run one script step; returns ``{"op", "result"}`` or ``{"op", "error"}`` (plus ``"id"`` if given)."""
    op = step.get("op")
    client = session.client
    out: Any
    if op == "list_tools":
        out = await list_tools(session)
    elif op == "list_resources":
        out = await list_resources(session)
    elif op == "list_resource_templates":
        out = await list_resource_templates(session)
    elif op == "list_prompts":
        out = await list_prompts(session)
    elif op == "call_tool":
        progress = bool(step.get("progress"))
        out = await call_tool(session, step["name"], step.get("arguments"), progress=progress)
    elif op == "read_resource":
        out = await read_resource(session, step["uri"])
    elif op == "get_prompt":
        out = await get_prompt(session, step["name"], step.get("arguments"))
    elif op == "ping":
        out = await _deprecated(lambda: client.send_ping())
    elif op == "set_logging_level":
        out = await _deprecated(lambda: client.set_logging_level(step["level"]))
    elif op == "subscribe_resource":
        out = await _deprecated(lambda: client.subscribe_resource(step["uri"]))
    elif op == "unsubscribe_resource":
        out = await _deprecated(lambda: client.unsubscribe_resource(step["uri"]))
    elif op == "complete":
        ref = step["ref"]
        model = t.PromptReference if ref.get("type") == "ref/prompt" else t.ResourceTemplateReference
        out = await _guard(client.complete(model.model_validate(ref), step["argument"]))
    elif op == "sleep":
        await asyncio.sleep(float(step.get("seconds", 0.1)))
        out = {}
    else:
        out = {"error": {"code": None, "message": f"unknown op: {op!r}", "data": None}}
    entry: dict[str, Any] = {"op": op}
    if "id" in step:
        entry["id"] = step["id"]
    if isinstance(out, dict) and set(out) == {"error"}:
        entry["error"] = out["error"]
    else:
        entry["result"] = out
    return entry


def parse_script(raw: Any) -> dict[str, Any]:
    """Normalise a script: a bare list of steps becomes ``{"steps": [...]}``."""
    if isinstance(raw, list):
        return {"steps": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("steps", []), list):
        raise ValueError("script must be a list of steps or an object with a 'steps' list")
    return raw


async def run_script(target: Target, script: Any, *, mode: str | None = None) -> dict[str, Any]:
    """Connect, run every step, and return ``{"server", "results", "requests", "notifications"}``.

    A failure to connect returns ``{"error": {...}}`` instead. ``mode`` overrides the script's
    ``"mode"`` (default ``"auto"``).
    """
    spec = parse_script(script)
    try:
        async with connect(
            target,
            mode=mode or spec.get("mode", "auto"),
            answers=spec.get("answers"),
            log_level=spec.get("log_level"),
        ) as session:
            results = [await run_step(session, step) for step in spec.get("steps", [])]
            return {
                "server": server_info(session),
                "results": results,
                "requests": session.capture.requests,
                "notifications": session.capture.notifications,
            }
    except Exception as exc:
        return error_json(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run an e2e step script against an MCP server (mcp 2.x).")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="Streamable HTTP endpoint, e.g. http://127.0.0.1:8765/mcp")
    where.add_argument("--stdio", nargs=argparse.REMAINDER, help="command and args that start a stdio server")
    parser.add_argument("--mode", help="legacy | auto | 2026-07-28 (default: script's, else auto)")
    parser.add_argument("--script", help="script file (default: stdin)")
    args = parser.parse_args(argv)
    raw = json.loads(Path(args.script).read_text() if args.script else sys.stdin.read())
    target: Target
    if args.url:
        target = args.url
    else:
        if not args.stdio:
            parser.error("--stdio needs a command")
        target = StdioServerParameters(command=args.stdio[0], args=args.stdio[1:], env=dict(os.environ))
    out = asyncio.run(run_script(target, raw, mode=args.mode))
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 1 if set(out) == {"error"} else 0


if __name__ == "__main__":
    sys.exit(main())

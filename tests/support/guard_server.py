"""Run a real guard (uvicorn + starlette) on a free loopback port inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn

from guard.config import Settings, parse
from guard.runtime import Runtime, build_runtime
from guard.server import GuardServer, build_app, uvicorn_config

START_TIMEOUT = 60.0
"""Seconds a guard may take to start (PII analyzer processes load models; CI machines are shared)."""


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(server: uvicorn.Server, sock: socket.socket) -> AsyncIterator[int]:
    """Run a uvicorn server on an already bound socket in this event loop; yields its port."""
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if task.done():
                task.result()
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            await asyncio.sleep(0.01)
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, 10)
        sock.close()


@contextlib.asynccontextmanager
async def running_runtime(runtime: Runtime, **overrides: Any) -> AsyncIterator[str]:
    """Serve ``runtime`` on 127.0.0.1:<free port>; yields the base ``ws://`` URL."""
    sock = free_socket()
    app = build_app(runtime)
    config = uvicorn_config(app, runtime, host="127.0.0.1", port=sock.getsockname()[1], **overrides)
    async with serving(GuardServer(config, app.state.guard), sock) as port:
        yield f"ws://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def running_guard(settings: Settings | dict[str, Any], **overrides: Any) -> AsyncIterator[str]:
    """Build guard from ``settings`` (a Settings or a raw TOML-shaped dict) and serve it."""
    if isinstance(settings, dict):
        settings = parse(settings)
    async with running_runtime(build_runtime(settings), **overrides) as base:
        yield base


async def wait_port(port: int, proc: asyncio.subprocess.Process, attempts: int = 200) -> None:
    """Wait until ``proc`` accepts TCP connections on ``port`` (its stderr is raised if it exits)."""
    for _ in range(attempts):
        if proc.returncode is not None:
            detail = await proc.stderr.read() if proc.stderr is not None else b""
            raise RuntimeError(detail.decode("utf-8", "replace"))
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError("guard did not start")


@contextlib.asynccontextmanager
async def guard_process(config: str | Path, port: int, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``guard serve`` as a real separate process on ``port``; killed on exit if still running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guard.cli", "serve", "--config", str(config), "--port", str(port), *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_port(port, proc)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def ws_upstream_process(port: int, *flags: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``tests/support/ws_upstream.py`` on ``port`` as a separate process; killed on exit."""
    script = Path(__file__).resolve().parent / "ws_upstream.py"
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), str(port), *flags,
                                                stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 10)  # "ready"
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def rss_of(pid: int) -> int:
    """Resident set size of a process, in bytes (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")

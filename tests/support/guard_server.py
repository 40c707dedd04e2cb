"""Run a real guard (uvicorn + starlette) on a free loopback port inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from guard.config import Settings, parse
from guard.runtime import Runtime, build_runtime
from guard.server import GuardServer, build_app, uvicorn_config


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running_runtime(runtime: Runtime, **overrides: Any) -> AsyncIterator[str]:
    """Serve ``runtime`` on 127.0.0.1:<free port>; yields the base ``ws://`` URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    app = build_app(runtime)
    config = uvicorn_config(app, runtime, host="127.0.0.1", port=port, **overrides)
    server = GuardServer(config, app.state.guard)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("guard did not start")
        app.state.guard.base_url = f"http://127.0.0.1:{port}"
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(task, 10)
        sock.close()


@contextlib.asynccontextmanager
async def running_guard(settings: Settings | dict[str, Any], **overrides: Any) -> AsyncIterator[str]:
    """Build guard from ``settings`` (a Settings or a raw TOML-shaped dict) and serve it."""
    if isinstance(settings, dict):
        settings = parse(settings)
    async with running_runtime(build_runtime(settings), **overrides) as base:
        yield base

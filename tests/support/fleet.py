"""Real processes for fleet tests: redis-server and HAProxy from Debian, on free loopback ports.

Both are started synchronously (``subprocess``) so module-scoped fixtures need no event loop.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.guard_server import free_port

WAIT = 30.0
"""Seconds a process may take to start listening on a loaded CI machine."""


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)  # a paused process cannot die of SIGKILL until resumed on some kernels
        proc.kill()
        proc.wait(10)


class RedisServer:
    """``redis-server`` without persistence on a fixed free port; can be killed, restarted, paused."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it from Debian)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, self.proc)

    def kill(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def pause(self) -> None:
        """SIGSTOP: Redis keeps its socket but answers nothing (a hung or very slow Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


HAPROXY_CONFIG = """\
global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 120s
    timeout check 10s
    retries 2
    option redispatch
frontend mcp
    bind 127.0.0.1:{port}
    default_backend guards
backend guards
    balance roundrobin
    # Streamable HTTP: keep a session on the replica that issued its Mcp-Session-Id
    stick-table type string len 64 size 100k expire 30m
    stick on req.hdr(mcp-session-id)
    stick store-response res.hdr(mcp-session-id)
    option httpchk GET /readyz
    http-check expect status 200
    # lenient checks (a loaded CI machine can be slow to answer); a killed replica refuses
    # connections at once, and retries + redispatch send those to a live one
    default-server check inter 500ms fall 3 rise 1 on-marked-down shutdown-sessions
{servers}
"""


@contextlib.contextmanager
def haproxy(backends: list[int], workdir: Path) -> Iterator[int]:
    """HAProxy on a free port balancing ``backends`` (health-checked on ``/readyz``); yields its port."""
    binary = shutil.which("haproxy")
    if binary is None:
        raise RuntimeError("haproxy is not installed (.ci/run installs it from Debian)")
    port = free_port()
    servers = "\n".join(f"    server g{i} 127.0.0.1:{p}" for i, p in enumerate(backends))
    config = workdir / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(port=port, servers=servers))
    subprocess.run([binary, "-c", "-q", "-f", str(config)], check=True)
    proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        yield port
    finally:
        stop(proc)

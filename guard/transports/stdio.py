"""Upstream over stdio: one child process per client session.

MCP ``basic/transports`` (stdio): newline-delimited JSON-RPC on the child's stdin and
stdout; stderr is free-form logging. Shutdown follows the spec's order: close the
child's stdin, wait, then SIGTERM, then SIGKILL after a grace period.

The child gets a minimal environment (PATH, HOME, LANG, ...) plus the upstream's
configured ``env``: guard's own environment (which may hold secrets) and anything from
the client are never inherited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from guard.config import UpstreamSettings
from guard.errors import UpstreamClosed, UpstreamUnavailable
from guard.jsonrpc import Message

log = logging.getLogger("guard.upstream.stdio")

_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT", "USER", "LOGNAME")
_READ_WINDOW = 64 * 1024
"""StreamReader limit: it pauses the pipe at twice this, so a slow client holds at most ~128 KiB here."""
_MIN_MESSAGE_LIMIT = 16 * 1024 * 1024


def child_environment(configured: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a stdio child starts with: a safe minimum plus configured variables."""
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.update(configured or {})
    return env


class StdioUpstream:
    """A child process speaking MCP on stdin/stdout."""

    def __init__(self, settings: UpstreamSettings, session_id: str, max_message_bytes: int) -> None:
        self._settings = settings
        self._session_id = session_id
        self._max_message = max(_MIN_MESSAGE_LIMIT, max_message_bytes * 4)
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()

    async def start(self) -> None:
        s = self._settings
        if s.command is None:
            raise UpstreamUnavailable("no command configured")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                s.command,
                *s.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_environment(dict(s.env)),
                cwd=s.cwd,
                limit=_READ_WINDOW,
                start_new_session=True,
            )
        except OSError as exc:
            raise UpstreamUnavailable(f"cannot start {s.command}: {exc.strerror or exc}") from exc
        self._stderr_task = asyncio.create_task(self._pump_stderr(), name=f"stderr-{s.name}")
        log.info("upstream %s: started pid %d for session %s", s.name, self._proc.pid, self._session_id)

    async def _pump_stderr(self) -> None:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        tag = f"upstream {self._settings.name} pid {proc.pid}"
        with contextlib.suppress(Exception):
            while True:
                line = await proc.stderr.readline()
                if not line:
                    return
                log.info("[%s] %s", tag, line.decode("utf-8", "replace").rstrip())

    async def send(self, text: str, message: Message) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise UpstreamClosed(self._exit_reason())
        async with self._write_lock:
            try:
                proc.stdin.write(text.encode("utf-8") + b"\n")
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise UpstreamClosed(self._exit_reason()) from exc

    async def receive(self) -> str:
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise UpstreamClosed("upstream not started")
        while True:
            line = await self._readline(proc.stdout)
            if not line:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), 1.0)
                raise UpstreamClosed(self._exit_reason())
            # Invalid UTF-8 is not replaced (that would alter the content silently): it becomes lone
            # surrogates, which guard.jsonrpc.parse refuses, so the request it answers gets -31011.
            text = line.decode("utf-8", "surrogateescape").strip()
            if text:
                return text

    async def _readline(self, stream: asyncio.StreamReader) -> bytes:
        """One line of any length up to the message limit, without a buffer as big as the line."""
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunks.append(await stream.readuntil(b"\n"))
                return b"".join(chunks)
            except asyncio.IncompleteReadError as exc:  # EOF
                chunks.append(exc.partial)
                return b"".join(chunks)
            except asyncio.LimitOverrunError as exc:
                chunk = await stream.readexactly(exc.consumed)
                chunks.append(chunk)
                size += len(chunk)
                if size > self._max_message:
                    raise UpstreamClosed("upstream sent a message over the size limit") from exc

    def _exit_reason(self) -> str:
        proc = self._proc
        if proc is not None and proc.returncode is not None:
            return f"upstream process exited with status {proc.returncode}"
        return "upstream process closed its output"

    async def aclose(self) -> None:
        proc = self._proc
        if proc is None:
            return
        grace = self._settings.terminate_grace
        if proc.stdin is not None and not proc.stdin.is_closing():
            with contextlib.suppress(Exception):
                proc.stdin.close()
        if proc.returncode is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        if proc.returncode is None:
            log.warning("upstream %s: pid %d ignored SIGTERM, killing", self._settings.name, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._stderr_task, 1.0)
        log.info("upstream %s: pid %d ended with status %s", self._settings.name, proc.pid, proc.returncode)

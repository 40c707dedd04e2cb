"""``guard serve --workers N``: N worker processes sharing one listening socket.

The supervisor binds the socket once and starts N workers (``spawn``), each a complete
guard with its own runtime. It restarts a worker that dies, and on SIGTERM/SIGINT
forwards SIGTERM to every worker (each drains gracefully) and exits 0 once they have.

Audit integrity: every worker writes its **own hash chain** — with ``N > 1`` the audit
``path`` (and ``checkpoint_path``) gain a ``.worker-<i>`` suffix before the extension, so
``audit/guard-audit.jsonl`` becomes ``audit/guard-audit.worker-0.jsonl``,
``…worker-1.jsonl``, … ``guard audit verify audit/`` verifies each chain on its own
(:mod:`guard.audit.fleet`).
Rate limits and connection caps are per worker.

One writer per chain (:mod:`guard.audit.lock`): the supervisor holds every worker file's
lock from before it binds the port until it exits, and hands each worker a descriptor of
its lock, so a second guard with the same audit path is refused at once, and a restarted
worker continues its own chain.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from guard.audit.lock import SharedLock, hold, share
from guard.config import Settings

log = logging.getLogger("guard.workers")


def worker_path(path: Path, index: int) -> Path:
    """``audit/guard-audit.jsonl`` -> ``audit/guard-audit.worker-<index>.jsonl``."""
    return path.with_name(f"{path.stem}.worker-{index}{path.suffix}")


def for_worker(settings: Settings, index: int, workers: int) -> Settings:
    """The settings one worker runs with: its own audit chain when there are several workers."""
    if workers <= 1 or not settings.audit.enabled:
        return settings
    audit = replace(
        settings.audit,
        path=worker_path(settings.audit.path, index),
        checkpoint_path=(worker_path(settings.audit.checkpoint_path, index)
                         if settings.audit.checkpoint_path is not None else None),
    )
    return replace(settings, audit=audit)


def _worker_main(settings: Settings, index: int, workers: int, sock: socket.socket,
                 audit_lock: SharedLock | None = None) -> None:
    from guard import logs
    from guard.runtime import build_runtime
    from guard.server import serve

    logs.configure(settings.server.log_level)
    sock.set_inheritable(False)  # never handed on to stdio upstreams (see guard.server.listening_socket)
    if audit_lock is not None:
        audit_lock.adopt()
    serve(build_runtime(for_worker(settings, index, workers)), sockets=[sock])


def bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.server.host, settings.server.port))
    sock.listen(2048)
    return sock  # reaches each worker through multiprocessing (DupFd), no inheritance needed


def supervise(settings: Settings, workers: int) -> int:
    """Run ``workers`` guard processes until SIGTERM/SIGINT; returns the exit status."""
    context = multiprocessing.get_context("spawn")
    if settings.audit.enabled:  # before binding: a second guard on these chains stops here
        for index in range(workers):
            hold(for_worker(settings, index, workers).audit.path)
    sock = bind(settings)
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(index: int) -> BaseProcess:
        audit_lock = share(for_worker(settings, index, workers).audit.path) if settings.audit.enabled else None
        proc = context.Process(target=_worker_main, args=(settings, index, workers, sock, audit_lock),
                               name=f"guard-worker-{index}")
        proc.start()
        log.info("worker %d started (pid %s)", index, proc.pid)
        return proc

    procs = {i: start(i) for i in range(workers)}
    print(f"guard: {workers} workers on {settings.server.host}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    while not stopping:
        time.sleep(0.2)
        for index, proc in list(procs.items()):
            if not proc.is_alive() and not stopping:
                log.warning("worker %d exited with %s; restarting", index, proc.exitcode)
                procs[index] = start(index)
    for proc in procs.values():
        if proc.is_alive() and proc.pid is not None:
            proc.terminate()  # SIGTERM: the worker drains, flushes audit and exits 0
    deadline = time.monotonic() + settings.server.drain_timeout + 15
    for proc in procs.values():
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()
    sock.close()
    codes = [proc.exitcode for proc in procs.values()]
    return 0 if all(code == 0 for code in codes) else 1

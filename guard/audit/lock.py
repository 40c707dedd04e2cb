"""One writer per audit file: an exclusive ``flock`` on ``<log>.lock`` beside the log.

Two guard processes appending to one chain fork it (each continues from the head it saw),
and a second ``guard serve`` started by mistake would rotate the running guard's file at
startup: ``guard audit verify`` then reports TAMPERED although nothing was tampered with.
So before guard touches an audit file (scan, rotate, write) and before it binds its port,
it takes an exclusive, non-blocking :func:`fcntl.flock` on ``<log path>.lock`` and writes
its pid there. A second process fails at once with :class:`AuditLocked`, which names the
holder's pid, and never opens the log itself.

The lock belongs to the open file description: it ends when the holder exits, however it
exits (SIGKILL included), so a stale lock file never blocks a restart. The file is never
deleted (deleting it would let two processes lock two different inodes of the same name).

Within one process a lock is re-entrant (:func:`hold` counts holders): ``guard serve``
takes it before binding the port and the audit log takes it again when it opens. With
``--workers N`` the supervisor takes the N per-worker locks before it binds and hands
each worker its lock's descriptor (:func:`share`, :func:`adopt`), so one chain has one
lock for as long as the supervisor runs, across worker restarts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.errors import AuditError

LOCK_SUFFIX = ".lock"


class AuditLocked(AuditError):
    """Another process holds the audit file's lock (``holder`` is its pid when known)."""

    def __init__(self, path: Path, holder: int | None) -> None:
        who = f"pid {holder}" if holder is not None else "another process"
        super().__init__(
            f"audit log {path} is in use by {who} (lock {lock_path(path)}): is another guard running "
            "with the same [audit] path? Stop it, or give this one its own audit.path"
        )
        self.path = path
        self.holder = holder


@dataclass
class _Held:
    fd: int
    count: int


_HELD: dict[Path, _Held] = {}
_MUTEX = threading.Lock()


def lock_path(path: Path) -> Path:
    """``audit/guard-audit.jsonl`` -> ``audit/guard-audit.jsonl.lock``."""
    return path.with_name(path.name + LOCK_SUFFIX)


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path))


def holder(path: Path) -> int | None:
    """The pid written in ``path``'s lock file, if readable (informational only)."""
    try:
        text = lock_path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def hold(path: Path) -> None:
    """Take (or re-enter) the exclusive lock of audit file ``path``; raises :class:`AuditLocked`.

    Creates the log's directory and the lock file if needed, but never the log itself.
    Raises :class:`AuditError` when the lock file cannot be opened.
    """
    key = _key(path)
    with _MUTEX:
        held = _HELD.get(key)
        if held is not None:
            held.count += 1
            return
        target = lock_path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open audit lock {target}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AuditLocked(key, holder(key)) from None
            raise AuditError(f"cannot lock {target}: {exc.strerror or exc}") from exc
        _write_pid(fd)
        _HELD[key] = _Held(fd, 1)


def release(path: Path) -> None:
    """Leave the lock once; the last holder in this process unlocks it."""
    key = _key(path)
    with _MUTEX:
        held = _HELD.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count <= 0:
            del _HELD[key]
            with contextlib.suppress(OSError):
                os.close(held.fd)  # closing the last descriptor releases the flock


def is_held(path: Path) -> bool:
    """Whether this process holds ``path``'s lock."""
    with _MUTEX:
        return _key(path) in _HELD


def _write_pid(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)


class SharedLock:
    """A held lock travelling to a ``spawn``-ed worker (pickled with its descriptor; see :func:`share`)."""

    def __init__(self, path: Path, fd: Any) -> None:
        self.path = path
        self._fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        from multiprocessing.reduction import DupFd

        return (SharedLock, (self.path, DupFd(self._fd) if isinstance(self._fd, int) else self._fd))

    def adopt(self) -> None:
        """In the worker: register the inherited descriptor as this process's hold on the lock.

        The descriptor shares the supervisor's open file description, so the flock is the same
        lock, not a second one; the worker then writes its own pid for operators.
        """
        fd = self._fd if isinstance(self._fd, int) else self._fd.detach()
        os.set_inheritable(fd, False)  # passed to this worker, not to its stdio upstreams
        key = _key(self.path)
        with _MUTEX:
            _HELD[key] = _Held(fd, 1)
        _write_pid(fd)


def share(path: Path) -> SharedLock:
    """The lock this process holds on ``path``, ready to be passed to a worker process."""
    with _MUTEX:
        held = _HELD.get(_key(path))
        if held is None:
            raise AuditError(f"audit lock of {path} is not held")
        return SharedLock(_key(path), held.fd)

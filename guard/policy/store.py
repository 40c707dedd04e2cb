"""Load policy files into snapshots and hot-reload them without a restart.

:class:`PolicyStore` owns the current :class:`~guard.policy.engine.Snapshot`. A background
asyncio task polls the model and policy files every ``interval`` seconds (0.5 s by default)
by ``stat`` signature (mtime, size, inode), with a full digest comparison every few seconds
in case an edit kept all three. A change is loaded once the signature has been stable for
one poll (so a half-written file is not picked up mid-save), which keeps the worst-case delay
under 2 s at the default interval.

Reloads are atomic (the pattern of uvicorn's reload supervisor, applied in-process): the new
files are parsed, validated and indexed into a complete new snapshot, then published with one
reference assignment. Decisions in flight keep the snapshot they read; connections are not
touched. An invalid edit keeps the previous snapshot, is logged, shows in :meth:`status`, and
is reported -- like every reload -- as an ``Event(kind=POLICY_RELOAD)`` through ``on_event``
so audit can record it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.context import Event, EventKind
from guard.errors import ConfigError
from guard.policy.engine import Snapshot
from guard.policy.model import MODEL_TEXT, ModelError, validate_model
from guard.policy.rules import parse_policy_text

logger = logging.getLogger("guard.policy")

EventSink = Callable[[Event], Awaitable[None] | None]
Signature = tuple[int, int, int] | None

_FULL_CHECK_EVERY = 10
"""Polls between digest comparisons that ignore an unchanged stat signature."""


class PolicyLoadError(ConfigError):
    """The model or policy file could not be loaded; ``problems`` lists every error."""


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class _Files:
    model: bytes
    policy: bytes


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PolicyLoadError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc


def build_snapshot(model_text: str, policy_text: str, *, policy_name: str = "policy.csv",
                   model_digest: str = "", policy_digest: str = "", loaded_at: float = 0.0) -> Snapshot:
    """Validate and index a model and policy held in memory. Raises :class:`PolicyLoadError`."""
    problems: list[str] = []
    try:
        validate_model(model_text)
    except ModelError as exc:
        problems.append(f"model: {exc}")
    parsed = parse_policy_text(policy_text, policy_name)
    problems.extend(str(p) for p in parsed.problems if p.severity == "error")
    if problems:
        raise PolicyLoadError(problems)
    return Snapshot(parsed, model_text=model_text, model_digest=model_digest or digest(model_text.encode()),
                    policy_digest=policy_digest or digest(policy_text.encode()), loaded_at=loaded_at)


def load_files(policy_path: Path, model_path: Path | None = None, *, loaded_at: float = 0.0) -> Snapshot:
    """Read, validate and index the policy (and model; the built-in one when ``None``)."""
    model_bytes = _read(model_path) if model_path is not None else MODEL_TEXT.encode()
    policy_bytes = _read(policy_path)
    return _build(_Files(model_bytes, policy_bytes), policy_path, model_path, loaded_at)


def _decode(data: bytes, path: Path | str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyLoadError([f"{path}: not UTF-8 text (byte {exc.start})"]) from exc


def _build(files: _Files, policy_path: Path, model_path: Path | None, loaded_at: float) -> Snapshot:
    model_text = _decode(files.model, model_path or "model")
    policy_text = _decode(files.policy, policy_path)
    return build_snapshot(model_text, policy_text, policy_name=policy_path.name,
                          model_digest=digest(files.model), policy_digest=digest(files.policy),
                          loaded_at=loaded_at)


class PolicyStore:
    """The current policy snapshot plus the reload task. One per process, shared by all sessions.

    Life cycle: ``store.load()`` (raises :class:`PolicyLoadError` at startup), then
    ``await store.start()`` to begin watching, ``await store.stop()`` at shutdown.
    """

    def __init__(self, policy_path: Path, model_path: Path | None = None, *, interval: float = 0.5,
                 on_event: EventSink | None = None, clock: Callable[[], float] = time.time) -> None:
        self.policy_path = Path(policy_path)
        self.model_path = Path(model_path) if model_path is not None else None
        self.interval = interval
        self.on_event = on_event
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._signature: tuple[Signature, Signature] = (None, None)
        self._pending: tuple[Signature, Signature] | None = None
        self._polls = 0
        self.reloads = 0
        self.reload_failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_attempt_at: float | None = None

    # -- loading ----------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            raise RuntimeError("PolicyStore.load() was not called")
        return snapshot

    def _signatures(self) -> tuple[Signature, Signature]:
        return (_stat(self.model_path) if self.model_path else None, _stat(self.policy_path))

    def _read_files(self) -> _Files:
        model = _read(self.model_path) if self.model_path is not None else MODEL_TEXT.encode()
        return _Files(model, _read(self.policy_path))

    def load(self) -> Snapshot:
        """Initial load; raises :class:`PolicyLoadError` listing every problem."""
        signature = self._signatures()
        snapshot = _build(self._read_files(), self.policy_path, self.model_path, self._clock())
        self._snapshot = snapshot
        self._signature = signature
        logger.info("policy loaded: %d rules, %d role links, %s", snapshot.size - _builtin_count(snapshot),
                    len(snapshot.links), snapshot.policy_digest)
        return snapshot

    async def reload(self) -> bool | None:
        """Re-read both files now. True: new snapshot published; False: invalid, old kept;
        None: contents unchanged (nothing to do)."""
        async with self._lock:
            signature = self._signatures()
            self.last_attempt_at = self._clock()
            previous = self._snapshot
            try:
                files = await asyncio.to_thread(self._read_files)
                model_digest, policy_digest = digest(files.model), digest(files.policy)
                if previous is not None and (model_digest, policy_digest) == (
                        previous.model_digest, previous.policy_digest):
                    self._signature = signature
                    return None
                snapshot = await asyncio.to_thread(_build, files, self.policy_path, self.model_path,
                                                   self._clock())
            except PolicyLoadError as exc:
                self._signature = signature
                self.reload_failures += 1
                self.last_error = "; ".join(exc.problems)
                self.last_error_at = self._clock()
                logger.error("policy reload failed, keeping the previous policy: %s", self.last_error)
                await self._emit(ok=False, error=self.last_error, previous=previous, current=None)
                return False
            self._snapshot = snapshot  # the one atomic swap
            self._signature = signature
            self.reloads += 1
            self.last_error = None
            logger.info("policy reloaded: %d rules, %s", snapshot.size - _builtin_count(snapshot),
                        snapshot.policy_digest)
            await self._emit(ok=True, error=None, previous=previous, current=snapshot)
            return True

    async def poll(self) -> bool | None:
        """One watch step: reload once a changed signature has held still for one poll."""
        self._polls += 1
        signature = self._signatures()
        if signature != self._signature:
            if self._pending == signature:
                self._pending = None
                return await self.reload()
            self._pending = signature
            return None
        self._pending = None
        if self._polls % _FULL_CHECK_EVERY == 0 and self.last_error is None:
            return await self.reload()
        return None

    async def _emit(self, *, ok: bool, error: str | None, previous: Snapshot | None,
                    current: Snapshot | None) -> None:
        details: dict[str, Any] = {
            "ok": ok,
            "error": error,
            "digests": {"model": current.model_digest, "policy": current.policy_digest} if current else None,
            "previous_digests": (
                {"model": previous.model_digest, "policy": previous.policy_digest} if previous else None
            ),
            "rules": current.size - _builtin_count(current) if current else None,
        }
        sink = self.on_event
        if sink is None:
            return
        try:
            result = sink(Event(kind=EventKind.POLICY_RELOAD, details=details, at=self._clock()))
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("policy reload event sink failed")

    # -- watching ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the watch task (idempotent). Call :meth:`load` first."""
        if self._snapshot is None:
            self.load()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name="guard-policy-reload")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive any surprise; the old policy stays
                logger.exception("policy watch step failed")

    def status(self) -> dict[str, Any]:
        """For health and metrics: what is loaded, since when, and how reloads went."""
        snapshot = self._snapshot
        return {
            "model": str(self.model_path) if self.model_path else "builtin",
            "policy": str(self.policy_path),
            "loaded_at": snapshot.loaded_at if snapshot else None,
            "digests": {"model": snapshot.model_digest, "policy": snapshot.policy_digest} if snapshot else None,
            "rules": snapshot.size - _builtin_count(snapshot) if snapshot else 0,
            "links": len(snapshot.links) if snapshot else 0,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "last_attempt_at": self.last_attempt_at,
            "watching": self._task is not None and not self._task.done(),
        }


def _stat(path: Path | None) -> Signature:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _builtin_count(snapshot: Snapshot) -> int:
    return sum(1 for rule in snapshot.rules if rule.line == 0)

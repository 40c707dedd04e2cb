"""The asynchronous audit log: a bounded queue, one writer task, one file thread.

The event loop builds each record and serializes it at once into a template (canonical
bytes with the chain fields left open, :func:`~guard.audit.canonical.template`) that it
puts on a bounded queue; the writer task takes whatever has accumulated (natural
batching) and hands the batch to a dedicated single thread that fills in the chain,
hashes and writes it (:mod:`guard.audit.sink`). So audit never blocks the loop on disk,
its throughput grows with load, and queued records are bytes the garbage collector
does not have to traverse.

One writer per file: :meth:`AuditLog.start` takes the file's exclusive lock
(:mod:`guard.audit.lock`) before the sink scans, rotates or writes anything, and
:meth:`AuditLog.aclose` leaves it.

Durability contract:

* ``append(record, durable=True)`` returns only after the record reached the OS
  (and ``fsync`` when the policy says so). The audit stage uses it for every
  rejection, so a denial is on disk before the client hears about it.
* ``append(record, durable=True, fsync=..., group=...)`` is the write-ahead of an
  allowed client request (``[audit] durability``): returns once the record reached the
  OS, ``fsync``ed or not, after waiting at most ``group`` seconds for others to share
  the write (group commit).
* other records are written as soon as the writer gets to them, gathered for at most
  ``batch_delay`` (10 ms) first: every hand-over to the file thread costs CPU (measured
  ~57 us per round trip on a 2-core VM), so at moderate rates one hand-over per record
  would cost more than the record. A durable record, a flush, a full batch or shutdown
  ends the wait at once. A full queue makes ``append`` wait (backpressure, never a
  silent drop).
* when a write fails (disk full, file gone, permission lost) the log is *failed*:
  ``append`` raises :class:`AuditUnavailable` at once, so the stage can fail closed;
  records not yet written are kept in memory (bounded by ``queue_size``) and written
  when a retry every ``retry_interval`` seconds succeeds on a fresh file. Records
  beyond that bound are counted, logged at ERROR immediately, and an
  ``audit-records-lost`` record with the count is written on recovery: nothing is
  dropped silently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from guard.audit import canonical, lock, schema
from guard.audit.schema import Clock, IdFactory
from guard.audit.sink import FileSink, SinkConfig, SinkWriteError
from guard.errors import AuditError

if TYPE_CHECKING:
    from guard.audit.settings import AuditSettings

T = TypeVar("T")
log = logging.getLogger("guard.audit")


class AuditUnavailable(AuditError):
    """The audit log cannot take a record right now (fail closed). The record was not taken."""


class AuditNotPersisted(AuditUnavailable):
    """A durable record was taken but could not be written; it is held and written on recovery."""


@dataclass(slots=True)
class _Entry:
    record: dict[str, Any] | bytes
    """The record's template bytes (or the dict, see :func:`_queued`); empty for a flush marker."""
    done: asyncio.Future[None] | None = None
    sync: bool = False
    """``fsync`` the batch holding this record before ``done`` resolves."""
    group: float = 0.0
    """Seconds the writer may wait to gather more records before writing this durable one."""


def _queued(record: dict[str, Any]) -> dict[str, Any] | bytes:
    """What the queue holds for a record: its template bytes, serialized on the event loop.

    A dict waiting in the queue survives young garbage collections and is promoted, so a
    busy queue of dicts makes every collection slower (measured: ~40 us of CPU per proxied
    call); bytes are not tracked. The dict itself is kept only if it has no template
    (the sink then serializes it, or records that it could not).
    """
    try:
        line = canonical.template(record)
    except TypeError:
        return record
    return record if line is None else line


_STOP = _Entry({})


class AuditLog:
    """Owns the sink, the queue and the writer task. Create, ``await start()``, ``append``, ``aclose``."""

    def __init__(
        self,
        sink: FileSink,
        *,
        queue_size: int = 10_000,
        max_batch: int = 2048,
        batch_delay: float = 0.010,
        retry_interval: float = 1.0,
        now: Clock = time.time,
        monotonic: Clock = time.monotonic,
        new_id: IdFactory = schema.new_event_id,
    ) -> None:
        self.sink = sink
        self.queue_size = queue_size
        self._max_batch = max_batch
        self._batch_delay = batch_delay
        self._gathering: asyncio.Future[None] | None = None
        """Set while the writer gathers a batch; resolving it ends the wait."""
        self._urgent: float | None = None
        """The shortest wait a queued durable record allows (0: write at once), until the next batch."""
        self._retry_interval = retry_interval
        self._now = now
        self._mono = monotonic
        self._new_id = new_id
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue(maxsize=queue_size)
        self._pending: collections.deque[_Entry] = collections.deque()
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._started = False
        self._start_failed_at: float | None = None
        self._closed = False
        self._locked = False
        self._failed = False
        self._dead = False
        self.lost = 0
        self.failures = 0

    @classmethod
    def from_settings(
        cls,
        settings: AuditSettings,
        *,
        now: Clock = time.time,
        monotonic: Clock = time.monotonic,
        new_id: IdFactory = schema.new_event_id,
    ) -> AuditLog:
        """Build a log from ``[audit]`` settings (loads the signing key; raises ConfigError)."""
        from guard.crypto.signing import KeyFileError, load_signing_key
        from guard.errors import ConfigError

        if settings.signing_key is None:
            raise ConfigError(["audit.signing_key: required when audit is enabled"])
        try:
            key = load_signing_key(settings.signing_key)
        except KeyFileError as exc:
            raise ConfigError([f"audit.signing_key: {exc}"]) from exc
        from guard.audit.settings import replica_id

        config = SinkConfig(
            path=settings.path, key=key, checkpoint_path=settings.checkpoint_path, fsync=settings.fsync,
            replica=replica_id(settings.replica),
            rotate_bytes=settings.rotate_bytes, rotate_interval=settings.rotate_interval,
            checkpoint_every=settings.checkpoint_every, checkpoint_interval=settings.checkpoint_interval,
        )
        sink = FileSink(config, now=now, monotonic=monotonic, new_id=new_id)
        return cls(sink, queue_size=settings.queue_size, retry_interval=settings.retry_interval, now=now,
                   monotonic=monotonic, new_id=new_id)

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Open a fresh file continuing the chain; raises :class:`AuditError` if the sink is unusable."""
        async with self._start_lock:
            if self._started:
                return
            if self._closed:
                raise AuditUnavailable("audit log is closed")
            if self._start_failed_at is not None and self._mono() - self._start_failed_at < self._retry_interval:
                raise AuditUnavailable("audit log could not be opened")  # retry at most every retry_interval
            if not self._locked:
                lock.hold(self.sink.config.path)  # one writer per file, before the file is touched
                self._locked = True
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-audit")
            try:
                await self._run(self.sink.open, "start")
            except (OSError, AuditError) as exc:
                self._executor.shutdown(wait=False)
                self._executor = None
                self._start_failed_at = self._mono()
                raise AuditError(f"cannot open audit log {self.sink.config.path}: {_why(exc)}") from exc
            if (self._pending or self.lost) and not await self._write_held():
                self.failures += 1  # records held while the log could not start: the writer retries them
            self._task = asyncio.get_running_loop().create_task(self._writer(), name="guard-audit-writer")
            self._started = True

    async def aclose(self) -> None:
        """Write everything queued, a stop record and a final checkpoint; then stop the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._close_started()
        finally:
            if self._locked:
                self._locked = False
                lock.release(self.sink.config.path)

    async def _close_started(self) -> None:
        if not self._started:
            return
        if self._task is not None and not self._task.done():
            await self._queue.put(_STOP)
            self._stop_gathering()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._failed and not self._dead:
            await self._recover()
        if self._failed or self._pending:
            log.error("audit: %d record(s) could not be written before shutdown", len(self._pending) + self.lost)
        else:
            try:
                await self._run(self.sink.close)
            except OSError as exc:
                log.error("audit: closing the log failed: %s", _why(exc))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # -- producers ------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while the sink is failing (records are being held in memory) or after close."""
        return not (self._failed or self._dead or self._closed)

    async def append(self, record: dict[str, Any], *, durable: bool = False, fsync: bool | None = None,
                     group: float = 0.0) -> None:
        """Queue a record; with ``durable`` wait until it reached the OS.

        A durable record is ``fsync``ed when ``fsync`` says so (default: unless the sink's
        ``fsync`` policy is ``off``). ``group`` (seconds) lets the writer wait that long for
        more records to share the write and the ``fsync`` (group commit); otherwise a durable
        record ends any wait at once.

        Raises :class:`AuditUnavailable` while the sink is failing or after close; the
        caller then decides (fail closed, or :meth:`keep` the record and continue).
        """
        if not self._started:
            await self.start()
        if not self.healthy:
            raise AuditUnavailable("audit log unavailable")
        self._stamp(record)
        done: asyncio.Future[None] | None = None
        sync = False
        if durable:
            done = asyncio.get_running_loop().create_future()
            sync = self.sink.config.fsync != "off" if fsync is None else fsync
        await self._queue.put(_Entry(_queued(record), done, sync, group if durable else 0.0))
        if done is not None:
            self._urgent = group if self._urgent is None else min(self._urgent, group)
        if self._queue.qsize() >= self._max_batch or (done is not None and group <= 0):
            self._stop_gathering()
        elif done is not None and self._gathering is not None:
            asyncio.get_running_loop().call_later(group, self._stop_gathering)  # no longer than the group wait
        if done is not None:
            await done

    def keep(self, record: dict[str, Any]) -> None:
        """Hold a record while the sink is failing (written on recovery), or count it as lost."""
        if self._closed or self._dead or len(self._pending) >= self.queue_size:
            self._count_lost(1)
        else:
            self._stamp(record)
            self._pending.append(_Entry(_queued(record)))

    def _stamp(self, record: dict[str, Any]) -> None:
        replica = self.sink.config.replica
        guard = record.get("guard")
        if replica and isinstance(guard, dict):
            guard["replica"] = replica

    async def checkpoint(self) -> None:
        """Write a checkpoint now (if any record is uncovered); for tests and operators."""
        if self._started and self.healthy:
            await self._flush_queue()
            await self._run(self.sink.checkpoint_now)

    async def flush(self) -> None:
        """Wait until everything queued so far has been handed to the OS."""
        if self._started and self.healthy:
            await self._flush_queue()

    # -- writer ---------------------------------------------------------------------

    def _stop_gathering(self) -> None:
        if self._gathering is not None and not self._gathering.done():
            self._gathering.set_result(None)

    async def _gather(self, delay: float) -> None:
        """Let records accumulate for up to ``delay`` (see the module docstring)."""
        loop = asyncio.get_running_loop()
        self._gathering = loop.create_future()
        timer = loop.call_later(delay, self._stop_gathering)
        try:
            await self._gathering
        finally:
            timer.cancel()
            self._gathering = None

    async def _flush_queue(self) -> None:
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Entry({}, marker))
        self._stop_gathering()
        with contextlib.suppress(AuditError):
            await marker

    async def _writer(self) -> None:
        try:
            while True:
                if self._failed:
                    if not await self._retry_wait():
                        return
                    continue
                entry = await self._next_entry()
                if entry is None:
                    await self._run(self.sink.tick)
                    continue
                if entry is _STOP:
                    return
                delay = self._batch_delay if entry.done is None else entry.group
                if self._urgent is not None:  # a durable record waits behind this one
                    delay = min(delay, self._urgent)
                if delay > 0 and self._queue.qsize() < self._max_batch:
                    await self._gather(delay)
                self._urgent = None
                batch = [entry]
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if nxt is _STOP:
                        await self._write(batch)
                        return
                    batch.append(nxt)
                await self._write(batch)
        except Exception:  # a bug must fail closed, loudly, not hang producers
            self._dead = True
            log.exception("audit: writer stopped unexpectedly; failing closed")
            self._fail_waiters()

    async def _next_entry(self) -> _Entry | None:
        """The next queued entry, or ``None`` when a timed checkpoint falls due first."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
        deadline = self.sink.next_deadline()
        if deadline is None:
            return await self._queue.get()
        timeout = deadline - self._mono()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _write(self, batch: list[_Entry]) -> None:
        markers = [e for e in batch if not e.record]
        entries = [e for e in batch if e.record]
        try:
            if entries:
                sync = any(e.sync for e in entries)
                await self._run(functools.partial(self.sink.write, [e.record for e in entries], sync=sync))
        except SinkWriteError as exc:
            self._on_failure(exc, entries[: exc.written], entries[exc.written:])
            for m in markers:
                _resolve(m, AuditUnavailable("audit log unavailable"))
            return
        except BaseException:
            for e in batch:
                if e.record:
                    self._count_lost(1)
                _resolve(e, AuditUnavailable("audit log unavailable"))
            raise
        for e in batch:
            _resolve(e, None)

    def _on_failure(self, exc: SinkWriteError, written: list[_Entry], unwritten: list[_Entry]) -> None:
        self._failed = True
        self.failures += 1
        log.error("audit: sink failed (%s); holding %d record(s), retrying every %gs",
                  _why(exc.cause), len(unwritten), self._retry_interval)
        for e in written:
            _resolve(e, None)
        for e in unwritten:
            _resolve(e, AuditNotPersisted("audit record not persisted"))
            self._hold(e)

    def _hold(self, entry: _Entry) -> None:
        if len(self._pending) >= self.queue_size:
            self._count_lost(1)
        else:
            self._pending.append(_Entry(entry.record))

    async def _retry_wait(self) -> bool:
        """While failed: drain the queue into memory, wait, retry. False when closing."""
        try:
            await asyncio.sleep(self._retry_interval)
        finally:
            self._drain_queue()
        if self._closed:
            return False
        await self._recover()
        return True

    def _drain_queue(self) -> None:
        while True:
            try:
                entry = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if entry is _STOP:
                self._closed = True
                continue
            if not entry.record:
                _resolve(entry, AuditUnavailable("audit log unavailable"))
                continue
            _resolve(entry, AuditNotPersisted("audit record not persisted"))
            self._hold(entry)

    async def _recover(self) -> None:
        """Open a fresh file and write what was held; stay failed if that fails too."""
        self._drain_queue()
        try:
            await self._run(self.sink.open, "recover")
        except (OSError, AuditError) as exc:
            log.error("audit: sink still failing: %s", _why(exc))
            return
        if await self._write_held():
            self._failed = False
            log.warning("audit: sink recovered; held records written")

    async def _write_held(self) -> bool:
        """Write the held records (and the lost count, if any); False if the sink fails again."""
        while self._pending or self.lost:
            batch: list[dict[str, Any] | bytes] = []
            if self.lost:
                batch.append(schema.internal_record(
                    schema.ACTION_RECORDS_LOST, {"audit": {"lost": self.lost}}, now=self._now(),
                    event_id=self._new_id()))
            held = [self._pending[i] for i in range(min(len(self._pending), self._max_batch))]
            batch.extend(e.record for e in held)
            try:
                await self._run(functools.partial(self.sink.write, batch, sync=self.sink.config.fsync != "off"))
            except SinkWriteError as exc:
                done = max(0, exc.written - (1 if self.lost else 0))
                if exc.written and self.lost:
                    self.lost = 0
                for _ in range(done):
                    self._pending.popleft()
                log.error("audit: sink still failing: %s", _why(exc.cause))
                self._failed = True
                return False
            self.lost = 0
            for _ in held:
                self._pending.popleft()
        return True

    def _count_lost(self, n: int) -> None:
        self.lost += n
        log.error("audit: %d record(s) lost so far (buffer full while the sink is failing)", self.lost)

    def _fail_waiters(self) -> None:
        while True:
            try:
                entry = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if entry.record:
                self._count_lost(1)
            _resolve(entry, AuditUnavailable("audit log unavailable"))

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._executor is None:
            raise AuditUnavailable("audit log is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _resolve(entry: _Entry, error: BaseException | None) -> None:
    if entry.done is not None and not entry.done.done():
        if error is None:
            entry.done.set_result(None)
        else:
            entry.done.set_exception(error)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

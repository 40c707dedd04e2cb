"""The asynchronous audit log: records chained and written on the event loop, ``fsync`` on a thread.

The event loop builds each record, serializes it at once into a template (canonical bytes
with the chain fields left open, :func:`~guard.audit.canonical.template`), fills in the
chain, hashes it and hands it to the OS with ``os.write`` (:mod:`guard.audit.sink`), in the
order :meth:`AuditLog.append` is called. An ``os.write`` to a regular file copies into the
page cache and does not wait for the disk (like a web server's access log); everything that
does wait for the disk -- ``fsync``, rotation, opening and closing files -- runs on one
dedicated file thread. Handing every record to that thread instead cost more CPU than the
record itself (two thread hand-offs per proxied call, measured ~100 us on a 2-core VM:
docs/performance.md).

While the file thread rotates or reopens the file, records wait in a bounded queue that the
writer task drains in order as soon as it is done (a full queue makes ``append`` wait:
backpressure, never a silent drop); the same task writes timed checkpoints when idle.

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
  the ``fsync`` (group commit).
* ``fsync``s are group commits: records that need one while an ``fsync`` runs share the
  next one, so concurrent requests never queue one ``fsync`` each.
* other records reach the OS before ``append`` returns too; under ``fsync = "always"`` an
  ``fsync`` follows in the background.
* when a write or an ``fsync`` fails (disk full, file gone, permission lost, I/O error) the
  log is *failed*: ``append`` raises :class:`AuditUnavailable` at once, so the stage can
  fail closed; records not yet written are kept in memory (bounded by ``queue_size``) and
  written when a retry every ``retry_interval`` seconds succeeds on a fresh file. Records
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
import queue
import threading
import time
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


class FileThread:
    """The log's one file thread: runs blocking file calls in order, answers on the event loop.

    What ``run_in_executor`` on a one-worker ``ThreadPoolExecutor`` did, without its layers: one
    loop future per call, a queue to the thread, and one ``call_soon_threadsafe`` back. The
    executor's ``concurrent.futures`` future, its locks and the chaining of the two futures cost
    more than the ``fsync`` hand-off itself (bench/README.md, seventh round). A call whose caller
    was cancelled still runs to its end on the thread (as an executor's would); its answer is
    dropped.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, tuple[Any, ...]]
                                       | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._serve, name=name, daemon=True)
        self._worker.start()

    def run(self, fn: Any, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue ``fn(*args)``; the future resolves on the calling loop with its result or exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return future

    def shutdown(self, wait: bool) -> None:
        """Stop after the calls already queued; with ``wait``, until the thread has ended."""
        self._calls.put(None)
        if wait:
            self._worker.join()

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            loop, future, fn, args = call
            error: BaseException | None = None
            result: Any = None
            try:
                result = fn(*args)
            except BaseException as failure:  # handed to the awaiting coroutine, as an executor would
                error = failure
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits for the answer
                pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class AuditLog:
    """Owns the sink, the queue and the writer task. Create, ``await start()``, ``append``, ``aclose``."""

    def __init__(
        self,
        sink: FileSink,
        *,
        queue_size: int = 10_000,
        max_batch: int = 2048,
        retry_interval: float = 1.0,
        now: Clock = time.time,
        monotonic: Clock = time.monotonic,
        new_id: IdFactory = schema.new_event_id,
    ) -> None:
        self.sink = sink
        self.queue_size = queue_size
        self._max_batch = max_batch
        self._direct = False
        """The writer waits on an empty queue: ``append`` may write on the spot."""
        self._fd_lock = asyncio.Lock()
        """Held around file-thread calls (``fsync``, rotate, open, close): never two at once."""
        self._sync_waiters: list[_Entry] = []
        self._sync_group: float | None = None
        """The shortest group-commit wait among the records waiting for the next ``fsync``."""
        self._syncer: asyncio.Task[None] | None = None
        self._unflushed: list[_Entry] = []
        """Entries chained into the sink's buffer this loop turn, written by :meth:`_flush_now`."""
        self._flush_scheduled = False
        self._unsynced: list[dict[str, Any] | bytes] = []
        """Records written since the last successful ``fsync`` began (while ``fsync`` is in use):
        held again if the next one fails."""
        self._tracks_sync = sink.config.fsync != "off"
        self._sync_asked = False
        self._retry_interval = retry_interval
        self._now = now
        self._mono = monotonic
        self._new_id = new_id
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue(maxsize=queue_size)
        self._pending: collections.deque[_Entry] = collections.deque()
        self._executor: FileThread | None = None
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
            self._executor = FileThread("guard-audit")
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
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._flush_now()
        if self._syncer is not None and not self._syncer.done():
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
        if self._failed and not self._dead:
            await self._recover()
        if self._failed or self._pending:
            log.error("audit: %d record(s) could not be written before shutdown", len(self._pending) + self.lost)
        else:
            async with self._fd_lock:
                self._flush_now()
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
        """Write a record; with ``durable`` wait until it reached the OS (and ``fsync`` if due).

        A durable record is ``fsync``ed when ``fsync`` says so (default: unless the sink's
        ``fsync`` policy is ``off``). ``group`` (seconds) lets that ``fsync`` wait that long
        for more records to share it (group commit).

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
            self._tracks_sync = self._tracks_sync or sync
        entry = _Entry(_queued(record), done, sync, group if sync else 0.0)
        if self._direct and self._queue.empty():
            self._commit([entry])  # the common case: nothing ahead of it, the file is open
        else:
            await self._queue.put(entry)
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
            if self._direct:
                self._guarded(self.sink.checkpoint_now)

    async def flush(self) -> None:
        """Wait until everything appended so far has reached the OS and any ``fsync`` due is done."""
        if self._started and self.healthy:
            await self._flush_queue()
            syncer = self._syncer
            if syncer is not None and not syncer.done():
                with contextlib.suppress(AuditError):
                    await asyncio.shield(syncer)

    # -- writing on the loop ------------------------------------------------------------

    def _commit(self, batch: list[_Entry]) -> list[_Entry]:
        """Chain ``batch`` into the sink's buffer now (on the loop); :meth:`_flush_now` writes it.

        Every record chained in one loop turn reaches the OS with one ``os.write`` at the start
        of the next (a callback), where durable records are resolved or wait for ``fsync``.
        Returns the entries left for after a rotation: chaining stops at the record that makes
        the file due for rotation, which the writer does on the file thread.
        """
        entries = [e for e in batch if e.record]
        rest: list[_Entry] = []
        if entries:
            try:
                taken = self.sink.write([e.record for e in entries], sync=False, rotate=False, flush=False)
            except SinkWriteError as exc:  # only a bug or a failing checkpoint signature gets here
                self._fail_unflushed(exc, batch)
                return []
            if taken < len(entries):
                last = entries[taken - 1] if taken else None
                cut = next((i + 1 for i, e in enumerate(batch) if e is last), 0)
                batch, rest = batch[:cut], batch[cut:]
        self._unflushed += batch
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)
        if self.sink.rotation_due():
            self._direct = False  # appends queue until the writer has rotated
            self._wake_writer()
        return rest

    def _flush_now(self) -> None:
        """Write what :meth:`_commit` buffered; resolve its records or hand them to the ``fsync``."""
        self._flush_scheduled = False
        batch, self._unflushed = self._unflushed, []
        if not batch:
            return
        try:
            self.sink.flush()
        except SinkWriteError as exc:
            self._fail_unflushed(exc, batch)
            return
        if self._tracks_sync:
            self._unsynced += [e.record for e in batch if e.record]
            if len(self._unsynced) >= self.queue_size:
                self._sync_asked = True  # bound what a failed fsync would have to write again
        for e in batch:
            if e.sync:
                self._sync_waiters.append(e)
                self._sync_group = e.group if self._sync_group is None else min(self._sync_group, e.group)
            else:
                _resolve(e, None)
        if self._sync_waiters or self.sink.needs_sync or self._sync_asked:
            self._want_sync()

    def _fail_unflushed(self, exc: SinkWriteError, batch: list[_Entry]) -> None:
        entries = [e for e in batch if e.record]
        self._on_failure(exc, entries[: exc.written], entries[exc.written:])
        for m in batch:
            if not m.record:
                _resolve(m, AuditUnavailable("audit log unavailable"))

    async def _commit_all(self, batch: list[_Entry]) -> None:
        """The writer's :meth:`_commit`: rotate on the file thread whenever the file falls due."""
        while batch:
            if self._failed:
                self._fail_batch(batch)
                return
            batch = self._commit(batch)
            if batch:
                await self._rotate()

    def _guarded(self, fn: Any) -> None:
        """Run a sink call on the loop after what is buffered; a write failure fails the log."""
        self._flush_now()
        try:
            fn()
        except SinkWriteError as exc:
            self._on_failure(exc, [], [])
            return
        if self.sink.needs_sync:
            self._want_sync()

    def _wake_writer(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_Entry(b""))  # a marker: the writer looks at the log's state

    # -- fsync: group commit on the file thread ---------------------------------------

    def _want_sync(self) -> None:
        if self._syncer is None or self._syncer.done():
            self._syncer = asyncio.get_running_loop().create_task(self._sync_loop(), name="guard-audit-fsync")

    async def _sync_loop(self) -> None:
        """``fsync`` until nothing waits: each ``fsync`` covers every record written before it started."""
        while (self._sync_waiters or self.sink.needs_sync or self._sync_asked) and not self._failed:
            if self._sync_group:
                await asyncio.sleep(self._sync_group)  # group commit: let more records share this fsync
            waiters, self._sync_waiters, self._sync_group = self._sync_waiters, [], None
            self._sync_asked = False
            async with self._fd_lock:
                gone = self.sink.broken or self._failed
                if gone:
                    self._sync_waiters[:0] = waiters
                else:
                    covered = len(self._unsynced)
                    state = self.sink.begin_sync()
                    try:
                        await self._run(self.sink.sync)
                    except OSError as exc:
                        self._on_sync_failure(exc, waiters)
                        return
            if gone:
                break
            self.sink.synced(state)
            del self._unsynced[:covered]
            for e in waiters:
                _resolve(e, None)
        waiters, self._sync_waiters, self._sync_group = self._sync_waiters, [], None
        for e in waiters:  # the log failed before their fsync (after an fsync failure, held for the next file)
            _resolve(e, AuditNotPersisted("audit record not persisted"))

    def _on_sync_failure(self, exc: OSError, waiters: list[_Entry]) -> None:
        """An ``fsync`` failed: what it covered may not be on the disk. Write it again on a new file.

        The file is cut back to the last record a successful ``fsync`` covered and every
        record after it is held, in order, for the recovery file, so the chain stays whole
        (as after a failed write) instead of showing a gap where the disk lost data.
        """
        self._failed = True
        self.failures += 1
        cut = self.sink.roll_back_unsynced()
        log.error("audit: fsync failed (%s); holding %d record(s) for a fresh file, retrying every %gs",
                  _why(exc), cut, self._retry_interval)
        unsynced, self._unsynced = self._unsynced, []
        for record in unsynced:
            self._hold(_Entry(record))
        unflushed, self._unflushed = self._unflushed, []
        self._fail_batch(unflushed)  # chained after the cut: dropped from the buffer, held in order
        waiters += self._sync_waiters
        self._sync_waiters, self._sync_group = [], None
        for e in waiters:
            _resolve(e, AuditNotPersisted("audit record not persisted"))
        self._wake_writer()

    # -- writer task ------------------------------------------------------------------

    async def _flush_queue(self) -> None:
        marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Entry(b"", marker))
        with contextlib.suppress(AuditError):
            await marker

    async def _writer(self) -> None:
        """Drain what queued while the file thread was busy; rotate, retry and check the clock."""
        try:
            while True:
                if self._failed:
                    if not await self._retry_wait():
                        return
                    continue
                if self.sink.rotation_due():
                    await self._rotate()
                    continue
                self._direct = True
                try:
                    entry = await self._next_entry()
                finally:
                    self._direct = False
                if entry is None:
                    self._guarded(self.sink.tick)
                    continue
                if entry is _STOP:
                    return
                batch = [entry]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    batch.append(nxt)
                await self._commit_all(batch)
                if stop:
                    return
        except Exception:  # a bug must fail closed, loudly, not hang producers
            self._dead = True
            log.exception("audit: writer stopped unexpectedly; failing closed")
            self._fail_waiters()

    def _fail_batch(self, batch: list[_Entry]) -> None:
        """Entries queued behind a failure: hold their records, tell their waiters."""
        for e in batch:
            if not e.record:
                _resolve(e, AuditUnavailable("audit log unavailable"))
                continue
            _resolve(e, AuditNotPersisted("audit record not persisted"))
            self._hold(e)

    async def _rotate(self) -> None:
        """Rotate on the file thread; appends queue meanwhile (``_direct`` is off)."""
        async with self._fd_lock:
            self._flush_now()  # the file thread finds the buffer empty; nothing else touches the sink meanwhile
            try:
                await self._run(self.sink.rotate_now)
            except SinkWriteError as exc:
                self._on_failure(exc, [], [])
                return
            self._unsynced.clear()  # the rotated file was fsynced and closed (or fsync is off)

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

    def _on_failure(self, exc: SinkWriteError, written: list[_Entry], unwritten: list[_Entry]) -> None:
        self._failed = True
        self.failures += 1
        log.error("audit: sink failed (%s); holding %d record(s), retrying every %gs",
                  _why(exc.cause), len(unwritten), self._retry_interval)
        for e in written:
            if e.sync:
                _resolve(e, AuditNotPersisted("audit record not persisted"))  # reached the OS, never fsynced
            else:
                _resolve(e, None)
        for e in unwritten:
            _resolve(e, AuditNotPersisted("audit record not persisted"))
            self._hold(e)
        self._wake_writer()

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
            self._fail_batch([entry])

    async def _recover(self) -> None:
        """Open a fresh file and write what was held; stay failed if that fails too."""
        self._drain_queue()
        async with self._fd_lock:
            try:
                await self._run(self.sink.open, "recover")
            except (OSError, AuditError) as exc:
                log.error("audit: sink still failing: %s", _why(exc))
                return
            self._unsynced.clear()
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
        waiters, self._sync_waiters = self._sync_waiters, []
        for e in waiters:
            _resolve(e, AuditUnavailable("audit log unavailable"))
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
        return await self._executor.run(fn, args)


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

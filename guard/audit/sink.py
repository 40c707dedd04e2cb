"""The file side of the audit log: chain, checkpoint, rotate, append, fsync.

:class:`FileSink` is driven by :class:`~guard.audit.log.AuditLog`, never concurrently on
the same file descriptor. Appends run on the event loop (:meth:`FileSink.write` with
``rotate=False``): chaining, hashing and one ``os.write`` per batch, which hands the bytes
to the OS page cache and does not wait for the disk. Everything that waits for the disk or
changes the descriptors (:meth:`FileSink.sync`, :meth:`FileSink.rotate_now`,
:meth:`FileSink.open`, :meth:`FileSink.close`) runs on the log's file thread, and the log
never lets an append or another such call touch the sink while one runs; only
:meth:`FileSink.sync` may overlap with appends (``fsync`` and ``write`` on one descriptor
are safe together, and the descriptor stays open while it runs). A crash leaves at most
one torn final line.

Chain state (sequence number, head hash, counters) is *tentative* while a segment is
being built and committed only after the bytes reached the OS; a failed write rolls
back, truncates the partial bytes if it can, and leaves the sink ``broken`` until
:meth:`FileSink.open` is called again (reason ``recover``), which starts a fresh file
whose header chains to the last committed record and describes any torn tail left
behind (its length and SHA-256), so the verifier can tell a crash from tampering.

File layout: the active file is ``path``; a rotated file is renamed to
``<stem>-<first seq, 12 digits>-<UTC yyyymmddThhmmssZ><suffix>``. Every file starts
with an ``audit-file-opened`` header; a rotated file ends with a checkpoint; a clean
shutdown ends with ``audit-stopped`` followed by a checkpoint. guard always starts a
new file at startup, continuing the chain from the newest existing file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from guard.audit import schema
from guard.audit.canonical import GENESIS, canonical_unchecked, chained, digest, rfc3339
from guard.audit.checkpoint import CheckpointFileError, external_line, make_checkpoint
from guard.audit.schema import Clock, IdFactory
from guard.crypto.signing import SigningKey
from guard.errors import AuditError

FsyncPolicy = Literal["off", "denials", "always"]


@dataclass(frozen=True)
class SinkConfig:
    """Where and how to write (built from :class:`~guard.audit.settings.AuditSettings`)."""

    path: Path
    key: SigningKey
    checkpoint_path: Path | None = None
    fsync: FsyncPolicy = "denials"
    rotate_bytes: int = 100 * 1024 * 1024
    rotate_interval: float = 86400.0
    checkpoint_every: int = 1000
    checkpoint_interval: float = 60.0
    replica: str = ""
    """Replica id stamped into every record (``guard.replica``) and header; empty: none."""


class SinkWriteError(AuditError):
    """A write failed; ``written`` records of the batch did reach the OS before it."""

    def __init__(self, cause: OSError, written: int) -> None:
        super().__init__(f"audit sink write failed: {cause.strerror or cause}")
        self.cause = cause
        self.written = written


@dataclass
class _State:
    seq: int = 0
    head: str = GENESIS
    since_checkpoint: int = 0
    checkpoint_at: float = 0.0
    file_bytes: int = 0
    file_opened_at: float = 0.0
    file_first_seq: int = 1

    def copy(self) -> _State:
        """A copy (``dataclasses.replace`` costs several times more, twice per write)."""
        return _State(self.seq, self.head, self.since_checkpoint, self.checkpoint_at, self.file_bytes,
                      self.file_opened_at, self.file_first_seq)


@dataclass(frozen=True)
class Resume:
    """Where the chain stands on disk: last intact record and any torn bytes after it."""

    seq: int
    head: str
    file: Path | None
    torn: dict[str, Any] | None


class FileSink:
    """Appends chained, canonical JSON lines to the active file, with checkpoints and rotation."""

    def __init__(self, config: SinkConfig, *, now: Clock, monotonic: Clock, new_id: IdFactory) -> None:
        self.config = config
        self._now = now
        self._mono = monotonic
        self._new_id = new_id
        self._fd: int | None = None
        self._regular: bool | None = None
        """Whether the log path is a regular file (checked once per opened file)."""
        self._cp_fd: int | None = None
        self._state = _State()
        self._tx = _State()
        self._buf = bytearray()
        self._external: list[bytes] = []
        self._unsynced = False
        """Bytes were handed to the OS after the last ``fsync``."""
        self._durable = _State()
        """The chain state of the last ``fsync`` that succeeded (in the active file)."""
        self._cp_dirty = False
        """Checkpoint-file lines were written after the last ``fsync`` of that file."""
        self._opened = False
        self.broken = False
        self.records_written = 0
        self.bytes_written = 0

    # -- life cycle -----------------------------------------------------------------

    def open(self, reason: Literal["start", "recover"]) -> None:
        """Start a new active file continuing the chain; raises ``OSError``/:class:`AuditError`."""
        self._close_fds()
        path = self.config.path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        regular = _is_regular(path) or not path.exists()
        resume = scan_resume(path) if regular else Resume(0, GENESIS, None, None)
        if reason == "recover" and self._opened:
            # Trust what we know we committed; the scan only tells us about torn bytes.
            resume = Resume(self._state.seq, self._state.head, resume.file, resume.torn)
        previous: str | None = None
        if regular and path.exists() and path.stat().st_size > 0:
            previous = self._archive(path).name
        elif resume.file is not None:
            previous = resume.file.name
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        if self.config.checkpoint_path is not None:
            self.config.checkpoint_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._cp_fd = os.open(
                self.config.checkpoint_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
            )
        mono = self._mono()
        self._state = _State(seq=resume.seq, head=resume.head, checkpoint_at=mono, file_opened_at=mono,
                             file_first_seq=resume.seq + 1)
        self._tx = self._state.copy()
        self._buf.clear()
        self._external.clear()
        self.broken = False
        self._opened = True
        self._header(reason, previous, resume.torn)
        self._flush(sync=self.config.fsync != "off")
        self._durable = self._state.copy()
        if self.config.fsync != "off":
            _fsync_dir(path.parent)

    def close(self) -> None:
        """Write ``audit-stopped`` and a final checkpoint, then close the files."""
        if self._fd is not None and not self.broken:
            try:
                self._append(schema.internal_record(schema.ACTION_STOPPED, {}, now=self._now(),
                                                    event_id=self._new_id()))
                self._append_checkpoint()
                self._flush(sync=self.config.fsync != "off")
            finally:
                self._close_fds()
        else:
            self._close_fds()

    # -- writing --------------------------------------------------------------------

    def write(self, records: Sequence[dict[str, Any] | bytes], *, sync: bool, rotate: bool = True,
              flush: bool = True) -> int:
        """Chain and append ``records`` in order (checkpointing, and rotating with ``rotate``, as due).

        A record is a dict or its :func:`~guard.audit.canonical.template` bytes.

        ``sync`` ``fsync``s before returning (file thread only). The event loop calls it with
        ``sync=False, rotate=False, flush=False``: the records are chained into the buffer and
        reach the OS with the next :meth:`flush` (one ``os.write`` for every record of a loop
        turn); the write stops after the record at which the file falls due for rotation, and
        the log has the file thread call :meth:`rotate_now` before it writes the rest (and
        :meth:`sync` when :attr:`needs_sync`). Returns how many records were taken. Raises
        :class:`SinkWriteError` telling how many records did reach the OS.
        """
        if self._fd is None or self.broken:
            raise SinkWriteError(OSError("audit file is not open"), 0)
        committed = 0
        pending = 0
        try:
            for record in records:
                self._append(record)
                pending += 1
                if self._tx.since_checkpoint >= self.config.checkpoint_every:
                    self._append_checkpoint()
                if self._rotation_due():
                    if not rotate:
                        break
                    if self._tx.since_checkpoint:
                        self._append_checkpoint()
                    self._flush(sync)
                    committed, pending = committed + pending, 0
                    self._rotate()
            if self._checkpoint_time_due():
                self._append_checkpoint()
            if flush:
                self._flush(sync)
        except CheckpointFileError as checkpoint_failure:
            raise SinkWriteError(checkpoint_failure, committed + pending) from checkpoint_failure
        except OSError as exc:
            raise SinkWriteError(exc, committed) from exc
        return committed + pending

    def flush(self) -> None:
        """Hand the records :meth:`write` buffered (``flush=False``) to the OS, without ``fsync``.

        Raises :class:`SinkWriteError`: ``written`` is 0 when nothing was committed (the
        buffered records are dropped from the chain), or at least the number of buffered
        records when only the separate checkpoint file failed.
        """
        buffered = self._tx.seq - self._state.seq
        try:
            self._flush(False)
        except CheckpointFileError as checkpoint_failure:
            raise SinkWriteError(checkpoint_failure, buffered) from checkpoint_failure
        except OSError as exc:
            raise SinkWriteError(exc, 0) from exc

    def tick(self) -> None:
        """Write a checkpoint if one is due by time (called by the writer when idle)."""
        if self._fd is None or self.broken:
            return
        if self._checkpoint_time_due():
            self._append_checkpoint()
            self._flush_counting()

    def checkpoint_now(self) -> None:
        """Write a checkpoint now if any record is not yet covered by one."""
        if self._fd is None or self.broken or self._tx.since_checkpoint == 0:
            return
        self._append_checkpoint()
        self._flush_counting()

    def begin_sync(self) -> _State:
        """Mark everything handed to the OS so far as covered by the :meth:`sync` about to run (loop).

        Returns the chain state that :meth:`sync` makes durable; pass it to :meth:`synced`.
        """
        self._unsynced = self._cp_dirty = False
        return self._state.copy()

    def synced(self, state: _State) -> None:
        """A :meth:`sync` that began at ``state`` succeeded (loop)."""
        if state.file_first_seq == self._durable.file_first_seq:
            self._durable = state

    def roll_back_unsynced(self) -> int:
        """After a failed :meth:`sync`: cut the file back to the last durable record (loop).

        What was written after it may or may not be on the disk; the caller writes those
        records again on the next file (:meth:`open` with reason ``recover`` chains to the
        state this leaves), so a disk error never reads as a gap in the chain. Returns how
        many records were cut.
        """
        durable = self._durable
        cut = self._state.seq - durable.seq
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, durable.file_bytes)
        self._state = durable.copy()
        self._tx = durable.copy()
        self._buf.clear()
        self._external.clear()
        self.broken = True
        return cut

    def sync(self) -> None:
        """``fsync`` the log file and the checkpoint file. File thread; may overlap appends.

        A failure leaves the sink ``broken`` (what reached the disk is unknown): the log
        recovers on a fresh file, like after a failed write.
        """
        fd, cp_fd = self._fd, self._cp_fd
        if fd is None or self.broken:
            raise OSError("audit file is not open")
        try:
            os.fsync(fd)
            if cp_fd is not None and self.config.fsync != "off":
                os.fsync(cp_fd)
        except OSError:
            self.broken = True
            raise

    @property
    def needs_sync(self) -> bool:
        """Bytes reached the OS that the ``fsync`` policy wants on disk and no :meth:`sync` covered yet.

        ``fsync = "always"``: any record; otherwise checkpoint-file lines (unless ``off``).
        """
        return self._unsynced and (self.config.fsync == "always" or self._cp_dirty)

    def rotation_due(self) -> bool:
        """The active file reached ``rotate_bytes`` or ``rotate_interval``: call :meth:`rotate_now`."""
        return self._fd is not None and not self.broken and self._rotation_due()

    def rotate_now(self) -> None:
        """Seal the active file with a checkpoint, rename it and start the next one. File thread."""
        if self._fd is None or self.broken:
            raise SinkWriteError(OSError("audit file is not open"), 0)
        sync = self.config.fsync != "off"
        try:
            if self._tx.since_checkpoint:
                self._append_checkpoint()
            self._flush(sync)
            self._rotate()
            self._flush(sync)
        except OSError as exc:
            raise SinkWriteError(exc, 0) from exc
        self._durable = self._state.copy()

    def next_deadline(self) -> float | None:
        """Monotonic time of the next timed checkpoint (``None`` when nothing is uncovered)."""
        if self._state.since_checkpoint == 0:
            return None
        return self._state.checkpoint_at + self.config.checkpoint_interval

    @property
    def seq(self) -> int:
        """Sequence number of the last record that reached the OS."""
        return self._state.seq

    @property
    def head(self) -> str:
        return self._state.head

    # -- internals ------------------------------------------------------------------

    def _append(self, record: dict[str, Any] | bytes) -> None:
        tx = self._tx
        seq = tx.seq + 1
        if isinstance(record, bytes):
            line = chained(record, seq, tx.head)
        else:
            if self.config.replica:
                record.setdefault("guard", {}).setdefault("replica", self.config.replica)
            record.setdefault("guard", {})["chain"] = {"seq": seq, "prev": tx.head}
            try:
                line = canonical_unchecked(record)
            except TypeError:
                # A record guard built badly must not stop the log: record the fact, not the value.
                line = canonical_unchecked(self._unserializable(record, seq, tx.head))
        tx.head = digest(line)
        tx.seq = seq
        tx.since_checkpoint += 1
        tx.file_bytes += len(line) + 1
        self._buf += line
        self._buf += b"\n"

    def _unserializable(self, record: dict[str, Any], seq: int, prev: str) -> dict[str, Any]:
        event = record.get("event")
        event_id = event.get("id") if isinstance(event, dict) else None
        if not isinstance(event_id, str):
            event_id = "unknown"
        fallback = schema.internal_record(
            "audit-record-invalid", {"invalid": {"event_id": schema.text(event_id, 64)}},
            now=self._now(), event_id=self._new_id(),
        )
        fallback["guard"]["chain"] = {"seq": seq, "prev": prev}
        return fallback

    def _append_checkpoint(self) -> None:
        tx = self._tx
        cp = make_checkpoint(
            self.config.key, count=tx.seq, head=tx.head, time=rfc3339(self._now()),
            every=self.config.checkpoint_every, interval_ms=int(self.config.checkpoint_interval * 1000),
        )
        self._append(schema.internal_record(schema.ACTION_CHECKPOINT, {"checkpoint": cp}, now=self._now(),
                                            event_id=self._new_id()))
        tx.since_checkpoint = 0
        tx.checkpoint_at = self._mono()
        if self._cp_fd is not None:
            self._external.append(external_line(cp))

    def _header(self, reason: str, previous: str | None, torn: dict[str, Any] | None) -> None:
        audit: dict[str, Any] = {
            "reason": reason,
            "signing_key_id": self.config.key.key_id,
            **({"replica": self.config.replica} if self.config.replica else {}),
            "checkpoint_every": self.config.checkpoint_every,
            "checkpoint_interval_ms": int(self.config.checkpoint_interval * 1000),
        }
        if previous is not None:
            audit["previous_file"] = previous
        if torn is not None:
            audit["torn_tail"] = torn
        self._append(schema.internal_record(schema.ACTION_FILE_OPENED, {"audit": audit}, now=self._now(),
                                            event_id=self._new_id()))

    def _rotation_due(self) -> bool:
        cfg = self.config
        regular = self._regular
        if regular is None:  # stat once per opened file, not once per batch
            regular = self._regular = _is_regular(cfg.path)
        if not regular:
            return False
        if cfg.rotate_bytes and self._tx.file_bytes >= cfg.rotate_bytes:
            return True
        return bool(cfg.rotate_interval) and self._mono() - self._tx.file_opened_at >= cfg.rotate_interval

    def _checkpoint_time_due(self) -> bool:
        return self._tx.since_checkpoint > 0 and (
            self._mono() - self._tx.checkpoint_at >= self.config.checkpoint_interval
        )

    def _rotate(self) -> None:
        """Close the active file (it ends with a checkpoint), rename it, open a new one."""
        self._close_fds(keep_checkpoint_file=True)
        self._regular = None
        try:
            previous = self._archive(self.config.path).name
            self._fd = os.open(
                self.config.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
            )
        except OSError:
            self.broken = True
            raise
        if self.config.fsync != "off":
            _fsync_dir(self.config.path.parent)
        self._state.file_bytes = 0
        self._state.file_opened_at = self._mono()
        self._state.file_first_seq = self._state.seq + 1
        self._tx = self._state.copy()
        self._header("rotate", previous, None)

    def _archive(self, path: Path) -> Path:
        first = _first_seq(path)
        stamp = dt.datetime.fromtimestamp(self._now(), tz=dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        target = path.with_name(f"{path.stem}-{first:012d}-{stamp}{path.suffix}")
        n = 1
        while target.exists():
            target = path.with_name(f"{path.stem}-{first:012d}-{stamp}-{n}{path.suffix}")
            n += 1
        os.rename(path, target)
        return target

    def _flush_counting(self) -> None:
        try:
            self._flush(False)
        except OSError as exc:
            raise SinkWriteError(exc, 0) from exc

    def _flush(self, sync: bool) -> None:
        """Hand the tentative bytes to the OS, then commit the tentative chain state.

        On failure nothing is committed: partial bytes are truncated away when the file
        allows it, and the sink is ``broken`` until reopened. A failure of the separate
        checkpoint file happens *after* the log bytes were committed and is raised as
        :class:`CheckpointFileError` so the caller counts those records as written.
        """
        if not self._buf:
            return
        fd = self._fd
        if fd is None:
            raise OSError("audit file is not open")
        data = bytes(self._buf)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if sync:
                os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._state.file_bytes)  # drop our own unacknowledged partial bytes
            self._tx = self._state.copy()
            self._buf.clear()
            self._external.clear()
            self.broken = True
            raise
        self.records_written += self._tx.seq - self._state.seq
        self.bytes_written += len(data)
        self._state = self._tx.copy()
        self._buf.clear()
        self._unsynced = not sync
        external, self._external = self._external, []
        if self._cp_fd is not None and external:
            try:
                os.write(self._cp_fd, b"".join(external))
                if self.config.fsync != "off":
                    if sync:
                        os.fsync(self._cp_fd)
                    else:
                        self._cp_dirty = self._unsynced = True
            except OSError as exc:
                self.broken = True
                raise CheckpointFileError(exc.errno or 0, exc.strerror or "checkpoint file") from exc

    def _close_fds(self, keep_checkpoint_file: bool = False) -> None:
        fds = (self._fd,) if keep_checkpoint_file else (self._fd, self._cp_fd)
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = None
        if not keep_checkpoint_file:
            self._cp_fd = None


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def archive_pattern(path: Path) -> re.Pattern[str]:
    """Names of rotated files of ``path`` (group 1: first sequence number)."""
    return re.compile(
        rf"^{re.escape(path.stem)}-(\d{{12,}})-\d{{8}}T\d{{6}}Z(?:-\d+)?{re.escape(path.suffix)}$"
    )


def _first_seq(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            line = fh.readline()
        seq = orjson.loads(line)["guard"]["chain"]["seq"]
        return seq if isinstance(seq, int) and not isinstance(seq, bool) else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def scan_resume(path: Path) -> Resume:
    """Find the last intact record of the newest file (active, else newest rotated) and any torn tail.

    Raises :class:`AuditError` when that record cannot be read: guard refuses to start a
    chain it cannot continue rather than silently forking it.
    """
    candidate: Path | None = path if _is_regular(path) and path.stat().st_size > 0 else None
    if candidate is None and path.parent.is_dir():
        pattern = archive_pattern(path)
        rotated = [(int(m.group(1)), p.name, p) for p in path.parent.iterdir()
                   if (m := pattern.match(p.name)) and _is_regular(p)]
        if rotated:
            candidate = max(rotated)[2]
    if candidate is None:
        return Resume(0, GENESIS, None, None)
    last, torn = _tail(candidate)
    if last is None:
        if torn is None:
            return Resume(0, GENESIS, candidate, None)
        raise AuditError(f"{candidate.name}: no complete record to continue the chain from")
    try:
        chain = orjson.loads(last)["guard"]["chain"]
        seq = chain["seq"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"{candidate.name}: last record is unreadable; run `guard audit verify`") from exc
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise AuditError(f"{candidate.name}: last record has no sequence number")
    return Resume(seq, digest(last), candidate, torn)


def _tail(path: Path, window: int = 1 << 20) -> tuple[bytes | None, dict[str, Any] | None]:
    """The last complete line (without newline) and a description of bytes after it, if any."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        start = max(0, size - window)
        while True:
            fh.seek(start)
            data = fh.read(size - start)
            cut = data.rfind(b"\n")
            if cut >= 0 or start == 0:
                break
            start = max(0, start - window)
    torn_bytes = data[cut + 1:] if cut >= 0 else data
    torn = None
    if torn_bytes:
        torn = {"file": path.name, "bytes": len(torn_bytes), "sha256": digest(torn_bytes)}
    if cut < 0:
        return None, torn
    body = data[:cut]
    prev = body.rfind(b"\n")
    if prev < 0 and start > 0:
        return _last_line_slow(path, size - len(torn_bytes)), torn
    return body[prev + 1:], torn


def _last_line_slow(path: Path, end: int) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(end)
    return data[:-1].rsplit(b"\n", 1)[-1]

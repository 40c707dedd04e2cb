"""The writer: chaining, durability, checkpoints, rotation, restart, and real sink failures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from guard.audit import schema
from guard.audit.canonical import GENESIS, digest
from guard.audit.log import AuditNotPersisted, AuditUnavailable
from guard.audit.verify import verify
from guard.errors import AuditError
from tests.audit.helpers import KEY, Clock, make_log


def rec(n: int) -> dict[str, Any]:
    return schema.internal_record("test-record", {"n": n}, now=1_767_225_600.0, event_id=f"r{n}")


def records_of(directory: Path) -> list[dict[str, Any]]:
    from guard.audit import reader

    return list(reader.records([directory]))


def actions(directory: Path) -> list[str]:
    return [r["event"]["action"] for r in records_of(directory)]


async def test_records_are_chained_in_order_and_sealed_on_close(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    await log.start()
    for n in range(5):
        await log.append(rec(n))
    await log.aclose()
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    objs = [orjson.loads(line) for line in lines]
    assert [o["guard"]["chain"]["seq"] for o in objs] == list(range(1, len(objs) + 1))
    assert objs[0]["guard"]["chain"]["prev"] == GENESIS
    for before, obj in zip(lines, objs[1:], strict=False):
        assert obj["guard"]["chain"]["prev"] == digest(before)
    assert [o["event"]["action"] for o in objs] == [
        "audit-file-opened", *["test-record"] * 5, "audit-stopped", "audit-checkpoint"]
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600


async def test_durable_append_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    await log.start()
    await log.append(rec(1), durable=True)
    assert b'"id":"r1"' in (tmp_path / "audit.jsonl").read_bytes()
    await log.aclose()


async def test_restart_starts_a_new_file_that_continues_the_chain(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    await log.start()
    await log.append(rec(1))
    await log.aclose()
    last_line = (tmp_path / "audit.jsonl").read_bytes().splitlines()[-1]
    log2 = make_log(tmp_path)
    await log2.start()
    await log2.append(rec(2))
    await log2.aclose()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == 2
    header = orjson.loads((tmp_path / "audit.jsonl").read_bytes().splitlines()[0])
    assert header["guard"]["chain"] == {"seq": 5, "prev": digest(last_line)}
    assert header["guard"]["audit"]["reason"] == "start"
    rotated = [f.name for f in files if f.name != "audit.jsonl"]
    assert header["guard"]["audit"]["previous_file"] == rotated[0]
    assert header["guard"]["audit"]["signing_key_id"] == KEY.key_id
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"


async def test_checkpoint_every_n_records_and_into_the_second_location(tmp_path: Path) -> None:
    cp_file = tmp_path / "elsewhere" / "checkpoints.jsonl"
    log = make_log(tmp_path / "log", checkpoint_every=3, checkpoint_path=cp_file)
    await log.start()
    for n in range(7):
        await log.append(rec(n))
    await log.aclose()
    seq_actions = [(r["guard"]["chain"]["seq"], r["event"]["action"]) for r in records_of(tmp_path / "log")]
    cps = [s for s, a in seq_actions if a == "audit-checkpoint"]
    assert cps == [4, 8, 12]  # header + 2 records, 3 records, 2 records + the stop record (the seal)
    external = [orjson.loads(line)["guard_checkpoint"]["count"] for line in cp_file.read_bytes().splitlines()]
    assert external == [c - 1 for c in cps]


async def test_checkpoint_after_the_interval(tmp_path: Path) -> None:
    clock = Clock()
    log = make_log(tmp_path, clock, checkpoint_interval=60.0)
    await log.start()
    await log.append(rec(1))
    await log.flush()
    assert "audit-checkpoint" not in actions(tmp_path)
    clock.advance(61)
    await log.append(rec(2))
    await log.flush()
    assert actions(tmp_path)[-1] == "audit-checkpoint"
    await log.aclose()


async def test_rotation_by_size_keeps_one_chain_across_files(tmp_path: Path) -> None:
    log = make_log(tmp_path, rotate_bytes=2000)
    await log.start()
    for n in range(30):
        await log.append(rec(n))
    await log.aclose()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) > 3
    for path in files:
        objs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
        assert objs[0]["event"]["action"] == "audit-file-opened"
        if path.name != "audit.jsonl":
            assert objs[-1]["event"]["action"] == "audit-checkpoint"  # every rotated file ends sealed
    result = verify(reversed(files), keys=[KEY.public])  # any order
    assert result.status == "intact", result.render()


async def test_rotation_by_time(tmp_path: Path) -> None:
    clock = Clock()
    log = make_log(tmp_path, clock, rotate_interval=3600.0)
    await log.start()
    await log.append(rec(1))
    clock.advance(3601)
    await log.append(rec(2))
    await log.aclose()
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"


async def test_unusable_sink_fails_at_start(tmp_path: Path) -> None:
    """/dev/full returns ENOSPC for every write: guard must refuse to start, not run unaudited."""
    log = make_log(tmp_path, path=Path("/dev/full"))
    with pytest.raises(AuditError, match="No space left"):
        await log.start()
    await log.aclose()


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """A real kernel-enforced write failure (EFBIG), like a quota: RLIMIT_FSIZE with SIGXFSZ ignored."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_write_failure_holds_records_and_recovers_on_a_fresh_file(tmp_path: Path) -> None:
    log = make_log(tmp_path, retry_interval=0.02)
    await log.start()
    await log.append(rec(1), durable=True)
    with file_size_limit(64):
        with pytest.raises(AuditNotPersisted):
            await log.append(rec(2), durable=True)
        assert not log.healthy
        with pytest.raises(AuditUnavailable):
            await log.append(rec(3))
        log.keep(rec(4))
        await asyncio.sleep(0.1)  # several retries, all failing for real
        assert not log.healthy and log.failures == 1
    await wait_for(lambda: log.healthy)
    await log.aclose()
    seen = [r["event"]["id"] for r in records_of(tmp_path)]
    assert {"r1", "r2", "r4"} <= set(seen) and "r3" not in seen
    headers = [r["guard"]["audit"]["reason"] for r in records_of(tmp_path)
               if r["event"]["action"] == "audit-file-opened"]
    assert headers == ["start", "recover"]
    result = verify([tmp_path], keys=[KEY.public])
    assert result.status == "intact", result.render()


async def test_records_beyond_the_buffer_are_counted_and_reported(tmp_path: Path) -> None:
    log = make_log(tmp_path, queue_size=2, retry_interval=0.02)
    await log.start()
    with file_size_limit(64):
        with pytest.raises(AuditNotPersisted):
            await log.append(rec(1), durable=True)
        for n in range(2, 6):
            log.keep(rec(n))
        assert log.lost == 3
    await wait_for(lambda: log.healthy)
    await log.aclose()
    lost = [r for r in records_of(tmp_path) if r["event"]["action"] == "audit-records-lost"]
    assert [r["guard"]["audit"]["lost"] for r in lost] == [3]
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"


async def test_fd_replaced_by_dev_full_mid_run(tmp_path: Path) -> None:
    """The file descriptor starts failing (ENOSPC) under the writer; the next durable write reports it."""
    log = make_log(tmp_path, retry_interval=0.02)
    await log.start()
    await log.append(rec(1), durable=True)
    fd = log.sink._fd
    assert fd is not None
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, fd)
    os.close(full)
    with pytest.raises(AuditNotPersisted):
        await log.append(rec(2), durable=True)
    await wait_for(lambda: log.healthy)
    await log.aclose()
    assert "r2" in [r["event"]["id"] for r in records_of(tmp_path)]
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"


async def test_idle_writer_signs_an_overdue_checkpoint(tmp_path: Path) -> None:
    """No new records, but the interval passed: the writer's idle tick still seals the tail."""
    clock = Clock()
    log = make_log(tmp_path, clock, checkpoint_interval=60.0)
    await log.start()
    await log.append(rec(1))
    await log.flush()
    clock.advance(61)
    await log.flush()  # wakes the writer; it finds the checkpoint overdue
    await log.flush()
    assert actions(tmp_path)[-1] == "audit-checkpoint"
    result = verify([tmp_path], keys=[KEY.public])
    assert result.uncovered == 0 and result.status == "intact"
    await log.aclose()


async def test_a_failed_fsync_writes_its_records_again_on_a_fresh_file_so_the_chain_stays_whole(
        tmp_path: Path) -> None:
    """An fsync error must not read as tampering: what it covered is cut and written again."""
    log = make_log(tmp_path, retry_interval=0.02, fsync="denials")
    await log.start()
    await log.append(rec(1), durable=True)
    fd = log.sink._fd
    assert fd is not None
    read_end, write_end = os.pipe()  # fsync of a pipe fails (EINVAL): a real failing fsync under the sink
    os.dup2(write_end, fd)
    with pytest.raises(AuditNotPersisted):
        await log.append(rec(2), durable=True)
    assert not log.healthy
    await wait_for(lambda: log.healthy)
    await log.append(rec(3), durable=True)
    await log.aclose()
    os.close(read_end)
    os.close(write_end)
    assert [r["event"]["id"] for r in records_of(tmp_path) if r["event"]["action"] == "test-record"] == [
        "r1", "r2", "r3"]
    result = verify([tmp_path], keys=[KEY.public])
    assert result.status == "intact", result.render()


async def test_records_of_one_loop_turn_reach_the_os_in_one_write(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Records are written on the loop, batched per turn, and never wait for the file thread when
    nothing asks for fsync."""
    log = make_log(tmp_path)
    await log.start()
    calls = {"write": 0, "fsync": 0}
    real_write, real_fsync = os.write, os.fsync

    def counting_write(fd: int, data: Any) -> int:
        calls["write"] += 1
        return real_write(fd, data)

    def counting_fsync(fd: int) -> None:
        calls["fsync"] += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "write", counting_write)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    await asyncio.gather(*(log.append(rec(n), durable=n % 2 == 0) for n in range(40)))
    assert calls == {"write": 1, "fsync": 0}
    monkeypatch.undo()
    await log.aclose()
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"


async def test_concurrent_durable_records_share_an_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = make_log(tmp_path, fsync="denials")
    await log.start()
    fsyncs = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal fsyncs
        fsyncs += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    await asyncio.gather(*(log.append(rec(n), durable=True) for n in range(50)))
    assert 1 <= fsyncs <= 2  # one group commit (a second only if the first began before all were written)
    monkeypatch.undo()
    await log.aclose()
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"


async def test_a_file_call_whose_caller_gave_up_still_runs_and_every_later_call_gets_its_own_answer() -> None:
    """The file thread (fsync, rotate, open, close) runs calls in order; a caller cancelled
    mid-call (a client gone during a write-ahead ``fsync``) does not take another call's answer,
    an exception reaches its own caller, and ``shutdown(wait=True)`` runs what was queued."""
    import threading

    from guard.audit.log import FileThread

    thread = FileThread("guard-audit-test")
    release = threading.Event()
    ran: list[str] = []

    def slow() -> str:
        release.wait(5)
        ran.append("slow")
        return "slow"

    def fails() -> None:
        ran.append("fails")
        raise OSError(28, "No space left on device")

    first = asyncio.ensure_future(thread.run(slow, ()))
    second = thread.run(ran.append, ("second",))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert await second is None
    with pytest.raises(OSError, match="No space left"):
        await thread.run(fails, ())
    assert await thread.run(lambda a, b: a + b, (2, 3)) == 5
    assert ran == ["slow", "second", "fails"] and first.cancelled()
    thread.run(ran.append, ("queued before shutdown",))
    thread.shutdown(wait=True)
    assert ran[-1] == "queued before shutdown"

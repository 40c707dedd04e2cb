"""Tamper cases: each is detected with the right status and the first bad record named."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from guard.audit import schema
from guard.audit.canonical import canonical, digest
from guard.audit.verify import EXIT_INTACT, EXIT_TAMPERED, EXIT_TORN, EXIT_UNVERIFIABLE, Result, verify
from tests.audit.helpers import KEY, OTHER_KEY, make_log, read_lines, write_lines


async def build(directory: Path, n: int = 10, every: int = 4, **overrides: Any) -> tuple[Path, Path]:
    """A cleanly closed log of ``n`` records plus its separate checkpoint file."""
    cp_file = directory / "cp" / "checkpoints.jsonl"
    log = make_log(directory / "log", checkpoint_every=every, checkpoint_path=cp_file, **overrides)
    await log.start()
    for i in range(n):
        await log.append(schema.internal_record("test-record", {"n": i}, now=1_767_225_600.0,
                                                event_id=f"r{i}"))
    await log.aclose()
    return directory / "log", cp_file


def check(log_dir: Path, cp_file: Path | None = None, keys: Any = (KEY.public,)) -> Result:
    return verify([log_dir], keys=keys, checkpoint_files=[cp_file] if cp_file else [])


def line_of(lines: list[bytes], event_id: str) -> int:
    """1-based line number of the record with ``event.id``."""
    return next(i for i, line in enumerate(lines, 1) if f'"id":"{event_id}"'.encode() in line)


def rechain(lines: list[bytes], start: int) -> list[bytes]:
    """What an attacker without the key can do: recompute every hash link from ``start`` (0-based) on."""
    out = list(lines[:start])
    for line in lines[start:]:
        obj = orjson.loads(line)
        obj["guard"]["chain"]["prev"] = digest(out[-1].rstrip(b"\n"))
        out.append(canonical(obj) + b"\n")
    return out


async def test_intact_log_verifies(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    result = check(log_dir, cp)
    assert (result.status, result.exit_code, result.first_bad) == ("intact", EXIT_INTACT, None), result.render()
    assert result.uncovered == 0 and result.last_checkpoint_seq is not None


async def test_edited_field_is_named(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    n = line_of(lines, "r3")
    lines[n - 1] = lines[n - 1].replace(b'"n":3', b'"n":7')
    write_lines(path, lines)
    result = check(log_dir, cp)
    assert result.exit_code == EXIT_TAMPERED
    assert result.first_bad is not None and result.first_bad.where is not None
    assert result.first_bad.where.line == n and "modified" in result.first_bad.message


async def test_edited_chain_link_names_the_edited_record(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    n = line_of(lines, "r3")
    obj = orjson.loads(lines[n - 1])
    obj["guard"]["chain"]["prev"] = "f" * 64
    lines[n - 1] = canonical(obj) + b"\n"
    write_lines(path, lines)
    bad = check(log_dir, cp).first_bad
    assert bad is not None and bad.where is not None and bad.where.line == n


async def test_deleted_line_is_named(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    n = line_of(lines, "r4")
    del lines[n - 1]
    write_lines(path, lines)
    result = check(log_dir, cp)
    assert result.exit_code == EXIT_TAMPERED
    bad = result.first_bad
    assert bad is not None and bad.where is not None
    assert bad.where.line == n and "deleted" in bad.message


async def test_swapped_lines_are_named(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    n = line_of(lines, "r5")
    lines[n - 1], lines[n] = lines[n], lines[n - 1]
    write_lines(path, lines)
    result = check(log_dir, cp)
    assert result.exit_code == EXIT_TAMPERED
    bad = result.first_bad
    assert bad is not None and bad.where is not None and bad.where.line == n


async def test_inserted_copy_of_a_record_is_named(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    n = line_of(lines, "r6")
    lines.insert(n, lines[line_of(lines, "r1") - 1])
    write_lines(path, lines)
    bad = check(log_dir, cp).first_bad
    assert bad is not None and bad.where is not None and bad.where.line == n + 1


async def test_truncation_back_past_a_checkpoint_is_caught_by_the_checkpoint_file(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    write_lines(path, lines[: line_of(lines, "r6")])  # cut r7.., the checkpoints after them and the seal
    result = check(log_dir, cp)
    assert result.exit_code == EXIT_TAMPERED
    bad = result.first_bad
    assert bad is not None and "truncated" in bad.message
    assert bad.where is not None and bad.where.seq == orjson.loads(lines[line_of(lines, "r6") - 1])[
        "guard"]["chain"]["seq"] + 1


async def test_truncation_of_a_rotated_file_breaks_the_chain(tmp_path: Path) -> None:
    log_dir, _ = await build(tmp_path, n=30, rotate_bytes=2500)
    rotated = sorted(p for p in log_dir.glob("*.jsonl") if p.name != "audit.jsonl")
    victim = rotated[1]
    lines = read_lines(victim)
    write_lines(victim, lines[:-2])
    result = check(log_dir)
    assert result.exit_code == EXIT_TAMPERED
    bad = result.first_bad
    assert bad is not None and bad.where is not None and bad.where.file == rotated[2].name


async def test_naive_forged_line_appended_is_named(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    forged = orjson.loads(lines[line_of(lines, "r2") - 1])
    forged["event"]["id"] = "forged"
    lines.append(canonical(forged) + b"\n")
    write_lines(path, lines)
    bad = check(log_dir, cp).first_bad
    assert bad is not None and bad.where is not None and bad.where.line == len(lines)


async def test_well_formed_forged_line_after_the_shutdown_seal_is_caught(tmp_path: Path) -> None:
    """The attacker computes the right seq and prev (no key needed) and appends after a clean close."""
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    last = orjson.loads(lines[-1])
    forged = schema.internal_record("test-record", {"n": 99}, now=1_767_225_600.0, event_id="forged")
    forged["guard"]["chain"] = {"seq": last["guard"]["chain"]["seq"] + 1, "prev": digest(lines[-1][:-1])}
    lines.append(canonical(forged) + b"\n")
    write_lines(path, lines)
    result = check(log_dir, cp)
    assert result.exit_code == EXIT_TAMPERED
    bad = result.first_bad
    assert bad is not None and bad.where is not None and bad.where.line == len(lines)
    assert "sealed" in bad.message


async def test_edited_inline_checkpoint_is_named(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    n = next(i for i, line in enumerate(lines, 1) if b"audit-checkpoint" in line)
    obj = orjson.loads(lines[n - 1])
    obj["guard"]["checkpoint"]["count"] += 1
    lines[n - 1] = canonical(obj) + b"\n"
    write_lines(path, rechain(lines, n))  # even with the chain repaired, the signature gives it away
    result = check(log_dir, cp)
    assert result.exit_code == EXIT_TAMPERED
    bad = result.first_bad
    assert bad is not None and bad.where is not None and bad.where.line == n
    assert "signature" in bad.message


async def test_edited_checkpoint_file_entry_is_named(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    lines = read_lines(cp)
    obj = orjson.loads(lines[1])
    obj["guard_checkpoint"]["head"] = "0" * 64
    lines[1] = canonical(obj) + b"\n"
    write_lines(cp, lines)
    result = check(log_dir, cp)
    assert result.exit_code == EXIT_TAMPERED
    bad = result.first_bad
    assert bad is not None and bad.where is not None and (bad.where.file, bad.where.line) == (cp.name, 2)


async def test_rechained_edit_is_caught_by_the_next_signed_checkpoint(tmp_path: Path) -> None:
    log_dir, _ = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    n = line_of(lines, "r5")
    obj = orjson.loads(lines[n - 1])
    obj["guard"]["n"] = 500
    lines[n - 1] = canonical(obj) + b"\n"
    write_lines(path, rechain(lines, n))
    result = check(log_dir)  # in-line checkpoints alone
    assert result.exit_code == EXIT_TAMPERED
    bad = result.first_bad
    assert bad is not None and bad.where is not None
    previous_cp = max(i for i, line in enumerate(lines[: n - 1], 1) if b"audit-checkpoint" in line)
    assert "modified" in bad.message
    assert bad.where.line == previous_cp + 1  # the first record after the last checkpoint that matched
    assert bad.where.line <= n


async def test_removed_checkpoints_are_caught_by_the_checkpoint_policy(tmp_path: Path) -> None:
    """Drop every checkpoint after the first and re-chain: more than `every` unsigned records remain."""
    log_dir, _ = await build(tmp_path, n=12)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    first_cp = next(i for i, line in enumerate(lines) if b"audit-checkpoint" in line)
    kept = lines[: first_cp + 1] + [line for line in lines[first_cp + 1:] if b"audit-checkpoint" not in line]
    for i, line in enumerate(kept):
        obj = orjson.loads(line)
        obj["guard"]["chain"]["seq"] = i + 1
        kept[i] = canonical(obj) + b"\n"
    write_lines(path, rechain(kept, 1))
    result = check(log_dir)
    assert result.exit_code == EXIT_TAMPERED
    assert any("without a checkpoint" in i.message for i in result.issues)


async def test_non_canonical_line_is_tampering(tmp_path: Path) -> None:
    """Same hash input is not enough: a duplicate key would let two parsers read different values."""
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    lines = read_lines(path)
    n = line_of(lines, "r2")
    lines[n - 1] = lines[n - 1].replace(b'{"@timestamp"', b'{"event":{"id":"x"},"@timestamp"', 1)
    write_lines(path, lines)
    result = check(log_dir, cp)
    assert result.exit_code == EXIT_TAMPERED
    assert any(i.where is not None and i.where.line == n for i in result.issues if i.kind == "tampered")


async def test_torn_final_line_has_its_own_status(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    with path.open("ab") as fh:
        fh.write(b'{"@timestamp":"2026-01-01T00:00:')
    result = check(log_dir, cp)
    assert (result.status, result.exit_code, result.first_bad) == ("torn", EXIT_TORN, None), result.render()
    assert "incomplete" in result.render()


async def test_torn_line_acknowledged_by_the_restarted_writer_is_intact(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path)
    with (log_dir / "audit.jsonl").open("ab") as fh:
        fh.write(b'{"@timestamp":"2026-01-01T00:00:')
    log = make_log(log_dir, checkpoint_every=4, checkpoint_path=cp)
    await log.start()
    await log.aclose()
    result = check(log_dir, cp)
    assert result.exit_code == EXIT_INTACT, result.render()
    assert any("recorded by the writer at restart" in i.message for i in result.issues)


async def test_bytes_appended_to_a_closed_rotated_file_are_tampering(tmp_path: Path) -> None:
    log_dir, _ = await build(tmp_path, n=20, rotate_bytes=2500)
    victim = sorted(p for p in log_dir.glob("*.jsonl") if p.name != "audit.jsonl")[0]
    with victim.open("ab") as fh:
        fh.write(b"garbage without newline")
    result = check(log_dir)
    assert result.exit_code == EXIT_TAMPERED
    assert result.first_bad is not None and result.first_bad.where is not None
    assert result.first_bad.where.file == victim.name


async def test_rotated_files_in_any_order_and_a_deleted_middle_file(tmp_path: Path) -> None:
    log_dir, cp = await build(tmp_path, n=30, rotate_bytes=2500)
    files = list(log_dir.glob("*.jsonl"))
    random.Random(7).shuffle(files)
    assert verify(files, keys=[KEY.public], checkpoint_files=[cp]).status == "intact"
    assert verify([str(log_dir / "*.jsonl")], keys=[KEY.public]).status == "intact"
    rotated = sorted(p for p in files if p.name != "audit.jsonl")
    rotated[1].unlink()
    result = verify([log_dir], keys=[KEY.public], checkpoint_files=[cp])
    assert result.exit_code == EXIT_TAMPERED
    assert result.first_bad is not None and result.first_bad.where is not None
    assert result.first_bad.where.file == rotated[2].name


@pytest.mark.parametrize("keys", [(), (OTHER_KEY.public,)])
async def test_without_the_right_key_the_log_is_unverifiable(tmp_path: Path, keys: Any) -> None:
    log_dir, cp = await build(tmp_path)
    result = check(log_dir, cp, keys=keys)
    assert (result.status, result.exit_code) == ("unverifiable", EXIT_UNVERIFIABLE)
    assert "key id" in result.render()


async def test_missing_first_file_or_path_is_unverifiable(tmp_path: Path) -> None:
    log_dir, _ = await build(tmp_path, n=30, rotate_bytes=2500)
    first = sorted(p for p in log_dir.glob("*.jsonl") if p.name != "audit.jsonl")[0]
    first.unlink()
    result = check(log_dir)
    assert result.exit_code == EXIT_UNVERIFIABLE and "earlier files" in result.render()
    assert verify([tmp_path / "nope.jsonl"], keys=[KEY.public]).exit_code == EXIT_UNVERIFIABLE


async def test_emptied_file_is_unverifiable(tmp_path: Path) -> None:
    log_dir, _ = await build(tmp_path)
    (log_dir / "audit.jsonl").write_bytes(b"")
    assert check(log_dir).exit_code == EXIT_UNVERIFIABLE


async def test_log_with_no_signature_at_all_is_unverifiable(tmp_path: Path) -> None:
    """A log forged from scratch without the key has no valid checkpoint: never reported intact."""
    log_dir, _ = await build(tmp_path)
    path = log_dir / "audit.jsonl"
    kept = [line for line in read_lines(path) if b"audit-checkpoint" not in line][:4]
    for i, line in enumerate(kept):
        obj = orjson.loads(line)
        obj["guard"]["chain"]["seq"] = i + 1
        kept[i] = canonical(obj) + b"\n"
    write_lines(path, rechain(kept, 1))
    result = check(log_dir)
    assert result.exit_code == EXIT_UNVERIFIABLE and "nothing proves" in result.render()

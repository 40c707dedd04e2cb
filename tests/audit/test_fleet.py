"""Audit across replicas and workers (issue 17): every chain verified on its own, records carry a replica id.

Verifying a fleet's files as one chain reported forks that are not there; now ``guard audit
verify`` and ``report`` take a whole fleet's files (directories, globs) and answer per chain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.audit import reader
from guard.audit.fleet import verify_fleet
from guard.audit.log import AuditLog
from guard.audit.settings import replica_id
from guard.audit.sink import FileSink
from guard.audit.verify import EXIT_TAMPERED
from guard.cli import main
from guard.pipeline.audit import AuditStage
from tests.audit.helpers import KEY, Clock, call_ctx, ids, read_lines, result_ctx, sink_config, write_lines


async def replica_log(directory: Path, replica: str, name: str = "guard-audit.jsonl", calls: int = 3) -> None:
    clock, new_id = Clock(), ids()
    sink = FileSink(sink_config(directory, path=directory / name, replica=replica, checkpoint_every=2),
                    now=clock, monotonic=clock, new_id=new_id)
    stage = AuditStage(AuditLog(sink, now=clock, monotonic=clock, new_id=new_id), now=clock, new_id=new_id)
    for i in range(calls):
        call = call_ctx("lookup", rid=i)
        await stage.process(call)
        await stage.process(result_ctx(request=call.request))
        clock.advance(1)
    await stage.aclose()


async def test_a_fleets_files_verify_per_replica_and_records_carry_the_replica(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    await replica_log(fleet / "guard-0", "guard-0")
    await replica_log(fleet / "guard-1", "guard-1")
    await replica_log(fleet / "guard-1", "guard-1", name="guard-audit.worker-1.jsonl")
    result = verify_fleet([fleet], keys=[KEY.public])
    assert result.status == "intact", result.render()
    assert sorted(c.replica or "" for c in result.chains) == ["guard-0", "guard-1", "guard-1"]
    assert {r["guard"]["replica"] for r in reader.records([fleet / "guard-0"])} == {"guard-0"}
    assert "3 chain(s)" in result.render()
    assert main(["audit", "verify", str(fleet / "guard-*")]) == 3  # no key given: unverifiable, not tampered


async def test_tampering_in_one_replica_names_that_chain(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    await replica_log(fleet / "a", "replica-a")
    await replica_log(fleet / "b", "replica-b")
    path = fleet / "b" / "guard-audit.jsonl"
    lines = read_lines(path)
    edited = next(i for i, line in enumerate(lines) if b'"name":"lookup"' in line)
    lines[edited] = lines[edited].replace(b'"lookup"', b'"export"')
    write_lines(path, lines)
    result = verify_fleet([fleet], keys=[KEY.public])
    assert result.status == "tampered" and result.exit_code == EXIT_TAMPERED
    bad = {c.replica: c.result.status for c in result.chains}
    assert bad == {"replica-a": "intact", "replica-b": "tampered"}


def test_replica_id_defaults_to_env_then_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.delenv("GUARD_REPLICA", raising=False)
    assert replica_id() == socket.gethostname()
    monkeypatch.setenv("GUARD_REPLICA", "guard-7f9c-x2")
    assert replica_id() == "guard-7f9c-x2"
    assert replica_id("configured") == "configured"


async def test_report_over_a_fleet_shows_each_chain_with_its_replica(tmp_path: Path) -> None:
    from guard.audit import report

    fleet = tmp_path / "fleet"
    await replica_log(fleet / "a", "replica-a")
    await replica_log(fleet / "b", "replica-b")
    page = report.render([fleet], keys=[KEY.public], now=0.0)
    assert "Chain replica-a: a/guard-audit" in page and "Chain replica-b: b/guard-audit" in page
    assert "in 2 chain(s)" in page and page.count('class="badge intact"') == 3  # overall + 2 chains


def test_worker_checkpoint_files_go_to_their_workers_chain(tmp_path: Path) -> None:
    from guard.audit.chains import group

    header = b'{"guard":{"chain":{"seq":1,"prev":"x"}}}\n'
    checkpoint = b'{"guard_checkpoint":{"count":1}}\n'
    for i in (0, 1):
        (tmp_path / f"guard-audit.worker-{i}.jsonl").write_bytes(header)
        (tmp_path / f"guard-audit.worker-{i}-000000000001-20260101T000000Z.jsonl").write_bytes(header)
        (tmp_path / "cp").mkdir(exist_ok=True)
        (tmp_path / "cp" / f"checkpoints.worker-{i}.jsonl").write_bytes(checkpoint)
    fleet = group([tmp_path])
    assert [c.base for c in fleet.chains] == ["guard-audit.worker-0", "guard-audit.worker-1"]
    for i, chain in enumerate(fleet.chains):
        assert len(chain.logs) == 2  # active + rotated
        assert [p.name for p in chain.checkpoints] == [f"checkpoints.worker-{i}.jsonl"]
    assert not fleet.unmatched_checkpoints

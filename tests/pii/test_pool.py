"""Analyzer processes (``guard/pii/pool.py``): same findings as in-process, crashes, stalls, no Presidio in guard."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from guard.pii.analysis import analyze_items, context_words
from guard.pii.engine import Analyzer
from guard.pii.pool import WORKER_ENVIRONMENT, AnalyzerSpec, PIIUnavailable, ProcessAnalysis
from guard.pii.rules import PIIRules
from tests.pii.conftest import ROOT

ITEMS = [
    ("write to alice.johnson@example.com or call +1 (212) 555-0187", context_words("$.result.note")),
    ("card 4111-1111-1111-1111, order ORD-2024-000981", context_words("$.result.card_number")),
    ("nothing to see here", ()),
]


def big_item(kib: int) -> list[tuple[str, tuple[str, ...]]]:
    """One string that takes the analyzer a while (phone-like order numbers, timestamps)."""
    line = "ORD-2024-000981 opened 2024-05-01T10:20:31Z by +44 20 7946 0958; "
    return [((line * (kib * 1024 // len(line) + 1)), ())]


async def wait_until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.fixture()
async def pool(rules: PIIRules) -> ProcessAnalysis:  # type: ignore[misc]
    analysis = ProcessAnalysis(AnalyzerSpec.for_rules(rules), workers=2, max_pending=8, stall_grace=0.3)
    await analysis.start()
    yield analysis
    await analysis.aclose()


async def test_workers_find_what_the_in_process_analyzer_finds(pool: ProcessAnalysis, analyzer: Analyzer) -> None:
    assert len(pool.pids()) == 2 and os.getpid() not in pool.pids()
    found = await pool.analyze(ITEMS, time.monotonic() + 10)
    assert found == analyze_items(analyzer, ITEMS)
    assert {d.entity_type for d in found[0]} >= {"EMAIL_ADDRESS", "PHONE_NUMBER"}
    assert found[2] == []
    # Concurrent requests are spread over both workers and each gets its own answer.
    many = await asyncio.gather(*(pool.analyze([ITEMS[i % 3]], time.monotonic() + 10) for i in range(8)))
    assert [m[0] for m in many] == [found[i % 3] for i in range(8)]
    assert pool.pending == 0 and pool.ready()[0]


async def test_a_killed_worker_fails_its_messages_closed_and_is_replaced(pool: ProcessAnalysis) -> None:
    victim = pool.pids()[0]
    slow = [asyncio.create_task(pool.analyze(big_item(256), time.monotonic() + 30)) for _ in range(2)]
    await asyncio.sleep(0.3)  # both workers busy with a slow message
    os.kill(victim, signal.SIGKILL)
    outcomes = await asyncio.gather(*slow, return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, PIIUnavailable)]
    assert [f.reason for f in failed] == ["pii_error"]  # only the victim's message
    await wait_until(lambda: len(pool.pids()) == 2 and victim not in pool.pids())
    assert pool.restarts == 1
    assert (await pool.analyze(ITEMS, time.monotonic() + 10))[0]


async def test_messages_wait_for_a_replacement_within_their_deadline(rules: PIIRules) -> None:
    analysis = ProcessAnalysis(AnalyzerSpec.for_rules(rules), workers=1)
    await analysis.start()
    try:
        os.kill(analysis.pids()[0], signal.SIGKILL)
        await wait_until(lambda: not analysis.pids())
        assert analysis.ready() == (False, "no analyzer process running")
        with pytest.raises(PIIUnavailable) as exc:  # no worker and no time to wait for one
            await analysis.analyze(ITEMS, time.monotonic() + 0.01)
        assert exc.value.reason == "pii_timeout"
        found = await analysis.analyze(ITEMS, time.monotonic() + 60)  # waits for the replacement
        assert found[0] and analysis.ready()[0]
    finally:
        await analysis.aclose()


async def test_a_worker_stuck_past_the_deadline_is_replaced(pool: ProcessAnalysis) -> None:
    pool.service.per_cost = 1e-9  # a pathological input: far slower than its size predicts, so admitted
    with pytest.raises(PIIUnavailable) as exc:
        await pool.analyze(big_item(512), time.monotonic() + 0.05)
    assert exc.value.reason == "pii_timeout"
    assert pool.pending == 1  # the slot is held while the worker still works on it
    await wait_until(lambda: pool.restarts == 1 and len(pool.pids()) == 2)
    await wait_until(lambda: pool.pending == 0)
    assert (await pool.analyze(ITEMS, time.monotonic() + 10))[0]


async def test_a_caller_that_gives_up_leaves_no_answer_to_the_wrong_message(pool: ProcessAnalysis) -> None:
    """A client that disconnects mid-analysis cancels its wait; the late answer goes nowhere."""
    big = big_item(64)
    task = asyncio.create_task(pool.analyze(big + ITEMS, time.monotonic() + 30))  # split over both workers
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.pending >= 1  # the slots stay held while the workers still work on them
    found = await pool.analyze(ITEMS, time.monotonic() + 30)  # queued behind the abandoned parts
    assert found[0] and found[2] == []
    await wait_until(lambda: pool.pending == 0)
    assert pool.restarts == 0


async def test_pending_cap_and_analyzer_errors_fail_closed(pool: ProcessAnalysis) -> None:
    with pytest.raises(PIIUnavailable) as exc:
        # context words must be strings: the analyzer in the worker raises on this one
        await pool.analyze([("mail bob@example.com", (42,))], time.monotonic() + 10)  # type: ignore[list-item]
    assert exc.value.reason == "pii_error"  # the worker reported the error and lives on
    assert (await pool.analyze(ITEMS, time.monotonic() + 10))[0] and pool.restarts == 0
    slow = [asyncio.create_task(pool.analyze(big_item(64), time.monotonic() + 30)) for _ in range(8)]
    await asyncio.sleep(0)
    with pytest.raises(PIIUnavailable) as exc:
        await pool.analyze(ITEMS, time.monotonic() + 10)
    assert exc.value.reason == "pii_overloaded"
    await asyncio.gather(*slow)


async def test_close_stops_the_workers(rules: PIIRules) -> None:
    analysis = ProcessAnalysis(AnalyzerSpec.for_rules(rules), workers=2)
    await analysis.start()
    pids = analysis.pids()
    await analysis.aclose()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(PIIUnavailable):
        await analysis.analyze(ITEMS, time.monotonic() + 1)


async def test_a_spec_that_cannot_build_stops_start_up() -> None:
    analysis = ProcessAnalysis(AnalyzerSpec(entities=None, nlp_model="no_such_spacy_model"), workers=1)
    with pytest.raises(Exception, match="failed to start"):
        await analysis.start()
    assert analysis.pids() == []


def test_guard_process_does_not_import_presidio_with_analyzer_processes() -> None:
    # Presidio and spaCy (about 90 MB) are loaded by the workers only.
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from guard import configtools as ct
        from guard.crypto.aead import KeyRing
        from guard.pii.rules import load_rules
        from guard.pii.settings import PIISettings
        from guard.pipeline.pii import build_pii_stage

        async def main():
            rules = load_rules(Path({str(ROOT / "policies" / "pii.toml")!r}), ct.Problems())
            stage = build_pii_stage(PIISettings(enabled=True, rules=rules, workers=1,
                                                keyring=KeyRing("k", {{"k": bytes(32)}})))
            await stage.start()
            await stage.aclose()
            loaded = sorted({{m.split(".")[0] for m in sys.modules if m.startswith(("presidio", "spacy"))}})
            print(loaded)

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


async def test_readyz_reports_the_analyzer_processes(tmp_path: Path) -> None:
    import httpx

    from guard import devkeys
    from guard.config import parse
    from guard.pipeline.pii import PIIStage
    from guard.runtime import build_runtime
    from tests.core.test_relay_bad_input import scripted
    from tests.support.guard_server import running_runtime

    devkeys.generate_all(tmp_path / "keys")
    cfg = scripted()
    cfg["pii"] = {"rules": str(ROOT / "policies" / "pii.toml"), "workers": 1,
                  "keyring_file": str(tmp_path / "keys" / "pii-keyring.json")}
    runtime = build_runtime(parse(cfg))
    stage = next(s for s in runtime.pipeline.stages if isinstance(s, PIIStage))
    assert isinstance(stage.analysis, ProcessAnalysis)
    async with running_runtime(runtime) as base, httpx.AsyncClient() as client:
        url = base.replace("ws://", "http://") + "/readyz"
        ready = (await client.get(url)).json()["checks"]["pii"]
        assert ready == {"ok": True, "detail": "1 of 1 analyzer process(es)"}
        os.kill(stage.analysis.pids()[0], signal.SIGKILL)
        await wait_until(lambda: not stage.analysis.pids())
        answer = await client.get(url)
        assert answer.status_code == 503 and not answer.json()["checks"]["pii"]["ok"]
        await wait_until(lambda: bool(stage.analysis.pids()))
        assert (await client.get(url)).status_code == 200


async def test_a_backlog_is_not_mistaken_for_a_stuck_worker(rules: PIIRules, analyzer: Analyzer) -> None:
    started = time.perf_counter()
    analyze_items(analyzer, big_item(128))
    assert time.perf_counter() - started > 0.3  # the first message keeps the worker busy past the grace
    analysis = ProcessAnalysis(AnalyzerSpec.for_rules(rules), workers=1, stall_grace=0.2)
    await analysis.start()
    try:
        analysis.service.per_cost = 1e-9  # admission underestimates the backlog: the next message is admitted
        first = asyncio.create_task(analysis.analyze(big_item(128), time.monotonic() + 60))
        await asyncio.sleep(0.05)
        with pytest.raises(PIIUnavailable) as exc:  # queued behind the first one: times out, not the worker's fault
            await analysis.analyze(ITEMS, time.monotonic() + 0.01)
        assert exc.value.reason == "pii_timeout"
        assert (await first)[0]
        await wait_until(lambda: analysis.pending == 0)
        await asyncio.sleep(0.3)
        assert analysis.restarts == 0
    finally:
        await analysis.aclose()


async def test_workers_outlive_signals_meant_for_guard_and_stop_when_guard_closes(rules: PIIRules) -> None:
    # Ctrl-C, `timeout` or systemd signal the whole group or service; guard may still be
    # draining, so its analyzers keep working until guard closes their input.
    analysis = ProcessAnalysis(AnalyzerSpec.for_rules(rules), workers=1)
    await analysis.start()
    pid = analysis.pids()[0]
    assert os.getpgid(pid) != os.getpgid(0)  # not in guard's process group
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.3)
    assert analysis.pids() == [pid] and (await analysis.analyze(ITEMS, time.monotonic() + 10))[0]
    await analysis.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_no_analyzer_outlives_a_killed_guard() -> None:
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from pathlib import Path
        from guard import configtools as ct
        from guard.pii.pool import AnalyzerSpec, ProcessAnalysis
        from guard.pii.rules import load_rules

        async def main():
            rules = load_rules(Path({str(ROOT / "policies" / "pii.toml")!r}), ct.Problems())
            analysis = ProcessAnalysis(AnalyzerSpec(entities=None, custom=tuple(rules.recognizers)), workers=2)
            await analysis.start()
            print(" ".join(map(str, analysis.pids())), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == -signal.SIGKILL, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in pids if _running(p)]
    assert not alive, "analyzer processes outlived guard"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_large_message_is_split_over_idle_workers_in_order(pool: ProcessAnalysis, analyzer: Analyzer) -> None:
    items = [*ITEMS * 30, *big_item(2)]  # 91 strings, ~7,000 characters
    before = [w.requests for w in pool._live]
    found = await pool.analyze(items, time.monotonic() + 30)
    assert found == analyze_items(analyzer, items)
    assert [w.requests - b for w, b in zip(pool._live, before, strict=True)] == [1, 1]  # one part each
    small = await pool.analyze(ITEMS, time.monotonic() + 10)  # below split_cost: one worker
    assert small == found[:3] and sum(w.requests for w in pool._live) == sum(before) + 3


async def test_analyzer_processes_do_not_inherit_key_ring_variables(rules: PIIRules,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers get a minimal environment: a key ring in guard's environment never reaches them."""
    monkeypatch.setenv("GUARD_PII_KEYRING", '{"primary": "k1", "keys": {"k1": "c2VjcmV0"}}')
    monkeypatch.setenv("GUARD_UPSTREAM_TOKEN", "secret-token")
    analysis = ProcessAnalysis(AnalyzerSpec.for_rules(rules), workers=1, max_pending=4)
    await analysis.start()
    try:
        environ = Path(f"/proc/{analysis.pids()[0]}/environ").read_bytes().split(b"\0")
        names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
        assert "GUARD_PII_KEYRING" not in names and "GUARD_UPSTREAM_TOKEN" not in names
        assert names <= {*WORKER_ENVIRONMENT}
        assert (await analysis.analyze(ITEMS, time.monotonic() + 30))[0]
    finally:
        await analysis.aclose()

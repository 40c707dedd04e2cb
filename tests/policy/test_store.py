"""Hot reload: atomic swaps under concurrent traffic, broken edits keep the old policy, events, status."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from guard.context import Event, EventKind, Principal
from guard.policy.engine import Authorizer
from guard.policy.model import MODEL_TEXT
from guard.policy.store import PolicyLoadError, PolicyStore, load_files

ANALYST = Principal(subject="alice", roles=("analyst",))
TOOLS = [f"tool_{i}" for i in range(100)]


def version(name: str, allowed: list[str]) -> str:
    """A policy that allows exactly ``allowed`` and names itself in a comment."""
    return f"# version {name}\n" + "".join(f"p, role:analyst, demo, tools/call, {t}, allow\n" for t in allowed)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def bump_mtime(path: Path) -> None:
    """Make sure the stat signature changes even on coarse-mtime filesystems."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "policy.csv"
    model = tmp_path / "model.conf"
    policy.write_text(version("A", TOOLS[:50]), encoding="utf-8")
    model.write_text(MODEL_TEXT, encoding="utf-8")
    return policy, model


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)


async def test_reload_applies_an_edit(files: tuple[Path, Path]) -> None:
    policy, model = files
    events = Recorder()
    store = PolicyStore(policy, model, on_event=events)
    store.load()
    authz = Authorizer(store)
    assert authz.check(ANALYST, "demo", "tools/call", "tool_0").allowed
    write_atomically(policy, version("B", TOOLS[50:]))
    assert await store.reload() is True
    assert not authz.check(ANALYST, "demo", "tools/call", "tool_0").allowed
    assert authz.check(ANALYST, "demo", "tools/call", "tool_99").allowed
    [event] = events.events
    assert event.kind is EventKind.POLICY_RELOAD
    assert event.details["ok"] is True and event.details["error"] is None
    assert event.details["digests"]["policy"] == store.snapshot.policy_digest
    assert event.details["previous_digests"]["policy"] != event.details["digests"]["policy"]
    assert store.status()["reloads"] == 1


async def test_unchanged_contents_do_not_reload(files: tuple[Path, Path]) -> None:
    policy, model = files
    events = Recorder()
    store = PolicyStore(policy, model, on_event=events)
    first = store.load()
    bump_mtime(policy)
    assert await store.reload() is None
    assert store.snapshot is first and events.events == []


@pytest.mark.parametrize(
    "broken",
    [
        "p, role:analyst, demo, tools/call, tool_0, allow\np, role:analyst, demo, tools/call\n",
        "p, role:analyst, demo, tools/call, tool_0, allow\np, role:analyst, demo, tools/call, ^x.*$, allow\n",
        "p, role:analyst, demo, tools/call, tool_0, allow\np, analyst, demo, tools/call, x, allow\n",
        b"\xff\xfe not utf-8".decode("latin-1"),
    ],
    ids=["truncated-line", "regex", "bad-subject", "not-utf8"],
)
async def test_broken_edit_keeps_the_previous_policy(files: tuple[Path, Path], broken: str) -> None:
    policy, model = files
    events = Recorder()
    store = PolicyStore(policy, model, on_event=events)
    before = store.load()
    if broken.startswith("\xff"):
        policy.write_bytes(b"\xff\xfe not utf-8")
    else:
        write_atomically(policy, broken)
    assert await store.reload() is False
    assert store.snapshot is before
    assert Authorizer(store).check(ANALYST, "demo", "tools/call", "tool_1").allowed
    status = store.status()
    assert status["reload_failures"] == 1 and status["last_error"]
    assert status["digests"]["policy"] == before.policy_digest
    [event] = events.events
    assert event.details["ok"] is False and event.details["error"] == status["last_error"]
    assert event.details["digests"] is None


async def test_broken_model_keeps_the_previous_policy(files: tuple[Path, Path]) -> None:
    policy, model = files
    store = PolicyStore(policy, model)
    before = store.load()
    write_atomically(model, MODEL_TEXT.replace("&& !some(where (p.eft == deny))", ""))
    assert await store.reload() is False
    assert store.snapshot is before
    assert "policy_effect" in (store.status()["last_error"] or "")


async def test_fixing_the_file_clears_the_error(files: tuple[Path, Path]) -> None:
    policy, model = files
    store = PolicyStore(policy, model)
    store.load()
    write_atomically(policy, "p, nonsense\n")
    assert await store.reload() is False
    write_atomically(policy, version("C", TOOLS[:1]))
    assert await store.reload() is True
    assert store.status()["last_error"] is None
    assert store.status()["reload_failures"] == 1


def test_initial_load_errors_are_raised_with_every_problem(tmp_path: Path) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text("p, a\np, role:x, s, tools/call, x, maybe\n", encoding="utf-8")
    with pytest.raises(PolicyLoadError) as err:
        PolicyStore(policy).load()
    assert len(err.value.problems) == 2
    with pytest.raises(PolicyLoadError):
        load_files(tmp_path / "missing.csv")


async def test_watcher_applies_an_edit_within_two_seconds(files: tuple[Path, Path]) -> None:
    policy, model = files
    store = PolicyStore(policy, model, interval=0.5)
    await store.start()
    try:
        authz = Authorizer(store)
        assert not authz.check(ANALYST, "demo", "tools/call", "tool_99").allowed
        write_atomically(policy, version("B", TOOLS[50:]))
        started = time.monotonic()
        while not authz.check(ANALYST, "demo", "tools/call", "tool_99").allowed:
            assert time.monotonic() - started < 2.0, "edit not applied within 2 s"
            await asyncio.sleep(0.05)
        assert store.status()["watching"] is True
    finally:
        await store.stop()
    assert store.status()["watching"] is False


async def test_watcher_survives_a_broken_edit_and_picks_up_the_fix(files: tuple[Path, Path]) -> None:
    policy, model = files
    store = PolicyStore(policy, model, interval=0.05)
    await store.start()
    try:
        write_atomically(policy, "p, role:analyst, demo\n")
        for _ in range(100):
            if store.reload_failures:
                break
            await asyncio.sleep(0.02)
        assert store.reload_failures == 1
        assert Authorizer(store).check(ANALYST, "demo", "tools/call", "tool_0").allowed
        write_atomically(policy, version("C", ["fixed"]))
        for _ in range(100):
            if store.reloads:
                break
            await asyncio.sleep(0.02)
        assert Authorizer(store).check(ANALYST, "demo", "tools/call", "fixed").allowed
    finally:
        await store.stop()


async def test_hot_reload_under_concurrent_traffic_never_shows_a_half_policy(files: tuple[Path, Path]) -> None:
    """Readers see either version A (tools 0-49) or version B (tools 50-99) in full, never a mix."""
    policy, model = files
    store = PolicyStore(policy, model, interval=0.02)
    await store.start()
    authz = Authorizer(store)
    seen: set[str] = set()
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            try:
                snap = authz.snapshot
                allowed = [t for t in TOOLS if snap.decide(ANALYST, "demo", "tools/call", t, {}).allowed]
                assert allowed in (TOOLS[:50], TOOLS[50:]), f"half state: {len(allowed)} tools allowed"
                seen.add("A" if allowed == TOOLS[:50] else "B")
                authz.check(ANALYST, "demo", "tools/call", "tool_7", {"x": 1})
            except BaseException as exc:  # collected and re-raised below
                errors.append(exc)
                return
            await asyncio.sleep(0)

    async def writer() -> None:
        for i in range(12):
            before = store.reloads
            write_atomically(policy, version("B" if i % 2 == 0 else "A", TOOLS[50:] if i % 2 == 0 else TOOLS[:50]))
            # wait for this version to be picked up (the readers keep hammering meanwhile); bounded
            for _ in range(200):
                if store.reloads > before:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.03)

    readers = [asyncio.create_task(reader()) for _ in range(8)]
    try:
        await writer()
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await store.stop()
    assert not errors, errors[0]
    assert seen == {"A", "B"}
    assert store.reloads >= 4
    assert store.reload_failures == 0


async def test_event_sink_failure_does_not_break_reload(files: tuple[Path, Path]) -> None:
    policy, model = files

    def broken_sink(event: Event) -> None:
        raise RuntimeError("audit down")

    store = PolicyStore(policy, model, on_event=broken_sink)
    store.load()
    write_atomically(policy, version("B", TOOLS[50:]))
    assert await store.reload() is True


def test_status_before_and_after_load(files: tuple[Path, Path]) -> None:
    policy, model = files
    store = PolicyStore(policy, model, clock=lambda: 1234.5)
    assert store.status()["loaded_at"] is None
    store.load()
    status = store.status()
    assert status["loaded_at"] == 1234.5
    assert status["rules"] == 50
    assert status["digests"]["policy"].startswith("sha256:")
    assert status["policy"] == str(policy)


def test_builtin_model_when_none_is_configured(files: tuple[Path, Path]) -> None:
    policy, _model = files
    store = PolicyStore(policy)
    store.load()
    assert store.status()["model"] == "builtin"
    assert store.snapshot.model_text == MODEL_TEXT

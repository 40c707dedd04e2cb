"""One writer per audit file (issue 15): a second guard on the same audit path is refused.

The false TAMPERED this stops: a second ``guard serve`` with the same configuration used to
rotate the running guard's file before failing on the busy port, forking the chain.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from guard import devkeys
from guard.audit import lock
from guard.audit.verify import verify
from guard.crypto.signing import load_verify_key
from tests.audit.helpers import make_log
from tests.core.test_relay_bad_input import call, req
from tests.support.guard_server import free_port, guard_process

SCRIPT = Path(__file__).resolve().parent.parent / "support" / "scripted_upstream.py"


def config(tmp_path: Path, port: int) -> Path:
    devkeys.generate_audit_key(tmp_path / "keys")
    cfg = tmp_path / "guard.toml"
    cfg.write_text(
        f"[server]\nhost = \"127.0.0.1\"\nport = {port}\ndrain_timeout = 5\n"
        f"[upstreams.s]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(SCRIPT))}]\n"
        "[auth]\nanonymous_servers = [\"s\"]\n"
        "[audit]\npath = \"audit/guard.jsonl\"\n"
        f"signing_key = {json.dumps(str(tmp_path / 'keys' / devkeys.AUDIT_PRIVATE_KEY))}\n")
    return cfg


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if not p.name.endswith(".lock")}


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
async def test_second_guard_on_same_audit_path_is_refused_before_touching_the_log(tmp_path: Path) -> None:
    port, other_port = free_port(), free_port()
    cfg = config(tmp_path, port)
    audit_dir = tmp_path / "audit"
    async with guard_process(cfg, port) as first:
        async with connect(f"ws://127.0.0.1:{port}/mcp/s", subprotocols=["mcp"]) as ws:
            assert (await call(ws, req(1, "ping")))["id"] == 1
            before = snapshot(audit_dir)
            second = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "guard.cli", "serve", "--config", str(cfg), "--port", str(other_port),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(second.communicate(), 60)
            assert second.returncode != 0
            message = err.decode()
            assert f"pid {first.pid}" in message and "guard.jsonl" in message
            assert port_is_free(other_port)  # refused before binding its port
            after = snapshot(audit_dir)
            assert after.keys() == before.keys()  # nothing rotated, nothing created
            for name, data in before.items():
                assert after[name].startswith(data)  # nothing rewritten (the first may have appended)
            assert (await call(ws, req(2, "ping")))["id"] == 2  # the first keeps serving and writing
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 40) == 0
    key = load_verify_key(tmp_path / "keys" / devkeys.AUDIT_PUBLIC_KEY)
    result = verify([audit_dir], keys=[key])
    assert result.status == "intact", result.render()
    assert sum(1 for name in snapshot(audit_dir)) == 1  # one file: no fork, no rotation


async def test_audit_log_in_this_process_reenters_its_own_lock(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lock.hold(path)  # what `guard serve` does before binding
    log = make_log(tmp_path)
    await log.start()
    await log.aclose()
    assert lock.is_held(path)  # still held by the first holder
    lock.release(path)
    assert not lock.is_held(path)
    assert lock.holder(path) is not None


def _try_lock(path: str, out: multiprocessing.Queue[str]) -> None:
    try:
        lock.hold(Path(path))
        out.put("locked")
    except lock.AuditLocked as exc:
        out.put(str(exc))


def test_lock_held_by_another_process_names_its_pid(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lock.hold(path)
    try:
        ctx = multiprocessing.get_context("spawn")
        out: multiprocessing.Queue[str] = ctx.Queue()
        proc = ctx.Process(target=_try_lock, args=(str(path), out))
        proc.start()
        message = out.get(timeout=60)
        proc.join(60)
        assert f"pid {os.getpid()}" in message
        assert not path.exists()  # the log itself was never created
    finally:
        lock.release(path)


def test_a_second_demo_on_the_same_directory_is_refused_before_binding(tmp_path: Path) -> None:
    """``guard demo`` takes the audit lock before its port, like ``guard serve``."""
    import subprocess

    from guard.config import load
    from guard.demo.cli import prepare

    port = free_port()
    config, _ = prepare(tmp_path / "dev", port)
    path = load(config).audit.path
    lock.hold(path)  # a running demo on this directory
    try:
        done = subprocess.run([sys.executable, "-m", "guard.cli", "demo", "--dir", str(tmp_path / "dev"),
                               "--port", str(port)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert f"pid {os.getpid()}" in done.stderr
        assert port_is_free(port)
    finally:
        lock.release(path)

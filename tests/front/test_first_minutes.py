"""The first ten minutes of a new user: guard demo, its tour, clear startup errors, check-config."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from guard.cli import missing_commands
from guard.config import parse
from guard.demo.cli import POLICY_FILES, prepare
from tests.front.helpers import ROOT
from tests.support.guard_server import free_port

GUARD = [sys.executable, "-m", "guard.cli"]


def test_demo_uses_its_own_copy_of_the_policies_and_keeps_edits(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    config, _ = prepare(dev, 8787)
    for name in POLICY_FILES:
        assert (dev / "policies" / name).read_text() == (ROOT / "policies" / name).read_text()
    assert str((dev / "policies" / "policy.csv").resolve()) in config.read_text()
    edited = (dev / "policies" / "policy.csv").read_text() + "p, role:analyst, demo, tools/call, echo, allow\n"
    (dev / "policies" / "policy.csv").write_text(edited)
    _, tokens = prepare(dev, 8787)  # a second start keeps the user's edit
    assert (dev / "policies" / "policy.csv").read_text() == edited
    assert "role:analyst, demo, tools/call, echo" not in (ROOT / "policies" / "policy.csv").read_text()
    for user, token in tokens.items():
        path = dev / "tokens" / f"{user}.token"
        assert path.read_text().strip() == token and (path.stat().st_mode & 0o077) == 0


async def _wait_line(stream: asyncio.StreamReader, needle: bytes, timeout: float) -> bytes:
    seen = b""
    async with asyncio.timeout(timeout):
        while needle not in seen:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"stream ended before {needle!r}: {seen.decode(errors='replace')}")
            seen += line
    return seen


async def test_demo_banner_appears_only_once_listening_and_the_tour_shows_each_outcome(tmp_path: Path) -> None:
    port = free_port()
    dev = tmp_path / "dev"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(*GUARD, "demo", "--dir", str(dev), "--port", str(port), cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env)
    try:
        assert proc.stdout is not None
        banner = await _wait_line(proc.stdout, b"Stop with Ctrl-C", 120)
        with socket.create_connection(("127.0.0.1", port), timeout=1):  # the banner is true: it listens
            pass
        url = f"http://127.0.0.1:{port}/mcp/demo"
        assert url.encode() in banner and b"demo tour" in banner and b"policies/policy.csv" in banner
        tour = await asyncio.create_subprocess_exec(*GUARD, "demo", "tour", "--dir", str(dev), "--url", url,
                                                    cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(tour.communicate(), 120)
        text = out.decode()
        assert tour.returncode == 0, err.decode()
        assert "ALLOWED" in text and "<pii:EMAIL_ADDRESS:" in text  # an allowed call, a PII token
        assert "DENIED: error -31001" in text and "policy_denied" in text  # a denial with its reason
        assert "REVEALED" in text  # bob's reveal, as the audit log recorded it
        # Another demo directory (the same one is refused earlier, by its audit lock: tests/audit/test_lock.py).
        second = await asyncio.create_subprocess_exec(*GUARD, "demo", "--dir", str(dev.parent / "other-dev"),
                                                      "--port", str(port),
                                                      cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                      stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 1 and b"already in use" in err and b"listening" not in out
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "guard.toml"
    config.write_text('[upstreams.demo]\ncommand = "python3"\nargs = ["-m", "guard.demo"]\n'
                      '[auth]\nanonymous_servers = ["demo"]\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(*GUARD, "serve", "--config", str(config), "--port", str(port),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use".encode() in err and b"Traceback" not in err


def test_check_config_reports_a_stdio_command_that_does_not_exist(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "guard.toml"
    config.write_text('[upstreams.gone]\ncommand = "no-such-mcp-server-xyz"\n'
                      '[upstreams.rel]\ncommand = "./bin/server"\ncwd = "/nonexistent"\n'
                      '[upstreams.ok]\ncommand = "python3"\n'
                      '[auth]\nanonymous_servers = ["gone", "rel", "ok"]\n')
    from guard.cli import main

    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "upstreams.gone.command: 'no-such-mcp-server-xyz' not found" in err
    assert "upstreams.rel.command" in err and "upstreams.ok" not in err
    settings = parse({"upstreams": {"ok": {"command": sys.executable}}, "auth": {"anonymous_servers": ["ok"]}})
    assert missing_commands(settings) == []

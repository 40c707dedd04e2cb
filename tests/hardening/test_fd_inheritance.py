"""A stdio upstream inherits none of guard's sockets (found while testing issue 15).

The attack it stops: guard's listening socket was inheritable, and the event loop uvicorn
picks (uvloop) spawns stdio upstreams without closing inheritable descriptors, so every
upstream MCP server process held guard's listening socket: it could ``accept()`` guard's
clients itself, before authentication, and it kept guard's port open after guard died (a
restarted guard's first clients reached a dead end). Real ``guard serve``, the scripted
upstream, its descriptors read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.core.test_relay_bad_input import call, req
from tests.support.guard_server import free_port, guard_process

SCRIPT = Path(__file__).resolve().parent.parent / "support" / "scripted_upstream.py"


def sockets_of(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[len("socket:["):-1])
    return out


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on 127.0.0.1:``port`` (``/proc/net/tcp``, state 0A)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            found.add(inode)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_stdio_upstream_does_not_hold_guards_listening_socket(tmp_path: Path, workers: int) -> None:
    port = free_port()
    record = tmp_path / "rec.jsonl"
    cfg = tmp_path / "guard.toml"
    cfg.write_text(
        f"[server]\nhost = \"127.0.0.1\"\nport = {port}\n"
        f"[upstreams.s]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(SCRIPT))}]\n"
        f"env = {{RECORD = {json.dumps(str(record))}}}\n"
        "[auth]\nanonymous_servers = [\"s\"]\n")
    async with guard_process(cfg, port, "--workers", str(workers)) as proc:
        async with connect(f"ws://127.0.0.1:{port}/mcp/s", subprotocols=["mcp"]) as ws:
            assert (await call(ws, req(1, "ping")))["id"] == 1
            upstream = int(Path(str(record) + ".pid").read_text())
            listening = listening_inodes(port)
            assert listening  # guard's own
            assert not (sockets_of(upstream) & listening), "the upstream holds guard's listening socket"
        proc.send_signal(signal.SIGTERM)  # a supervisor stops its workers (SIGKILL would orphan them)
        await asyncio.wait_for(proc.wait(), 40)  # its status is test_workers' subject (a worker may still start)

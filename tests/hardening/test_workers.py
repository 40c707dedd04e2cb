"""``guard serve --workers N``: shared port, a separate audit chain per worker, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from guard import devkeys
from guard.audit.verify import verify
from guard.crypto.signing import load_verify_key
from tests.core.test_relay_bad_input import call, req
from tests.support.guard_server import free_port, guard_process

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parent.parent / "support" / "scripted_upstream.py"


async def test_two_workers_serve_one_port_with_one_audit_chain_each(tmp_path: Path) -> None:
    devkeys.generate_audit_key(tmp_path / "keys")
    port = free_port()
    cfg = tmp_path / "guard.toml"
    cfg.write_text(
        f"[server]\nhost = \"127.0.0.1\"\nport = {port}\ndrain_timeout = 5\n"
        f"[upstreams.s]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(SCRIPT))}]\n"
        "[auth]\nanonymous_servers = [\"s\"]\n"
        "[audit]\npath = \"audit/guard.jsonl\"\n"
        f"signing_key = {json.dumps(str(tmp_path / 'keys' / devkeys.AUDIT_PRIVATE_KEY))}\n")
    async with guard_process(cfg, port, "--workers", "2") as proc:
        await asyncio.sleep(2.0)  # both workers up

        async def one(i: int) -> int:
            async with connect(f"ws://127.0.0.1:{port}/mcp/s", subprotocols=["mcp"]) as ws:
                reply = await call(ws, req(i, "ping"))
                return int(reply["id"])

        assert sorted(await asyncio.gather(*(one(i) for i in range(20)))) == list(range(20))
        second = await asyncio.create_subprocess_exec(  # same chains: refused before binding (issue 15)
            sys.executable, "-m", "guard.cli", "serve", "--config", str(cfg), "--port", str(free_port()),
            "--workers", "2", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 1 and b"guard.worker-0.jsonl is in use by pid" in err
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 40) == 0
    files = sorted(p.name for p in (tmp_path / "audit").iterdir())
    assert any(".worker-0" in f for f in files) and any(".worker-1" in f for f in files)
    key = load_verify_key(tmp_path / "keys" / devkeys.AUDIT_PUBLIC_KEY)
    for index in (0, 1):
        chain = sorted((tmp_path / "audit").glob(f"guard.worker-{index}*"))
        assert verify(chain, keys=[key]).status == "intact"

"""Write-ahead of allowed calls (issue 15): a call the upstream received is in the log, even if guard dies.

The gap this closes: guard forwarded an allowed ``tools/call`` and wrote its record a few
milliseconds later; killed in between, guard left no trace of a call the upstream executed and
``guard audit verify`` said INTACT. Now the request's record is in the log file before the request
is forwarded, the outcome's record refers to it, and verify reports a request without an outcome
as *in flight at crash* (exit 6), neither INTACT nor TAMPERED.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from guard import devkeys
from guard.audit import reader
from guard.audit.settings import Durability
from guard.audit.verify import EXIT_IN_FLIGHT, verify
from guard.cli import main
from guard.crypto.signing import load_verify_key
from guard.pipeline.audit import AuditStage
from tests.audit.helpers import KEY, Clock, call_ctx, ids, make_log, result_ctx
from tests.core.test_relay_bad_input import call, req
from tests.support.guard_server import free_port, guard_process

SCRIPT = Path(__file__).resolve().parent.parent / "support" / "scripted_upstream.py"


def config(tmp_path: Path, port: int, received: Path) -> Path:
    devkeys.generate_audit_key(tmp_path / "keys")
    cfg = tmp_path / "guard.toml"
    cfg.write_text(
        f"[server]\nhost = \"127.0.0.1\"\nport = {port}\ndrain_timeout = 5\n"
        f"[upstreams.s]\ncommand = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(SCRIPT))}]\n"
        f"env = {{RECORD = {json.dumps(str(received))}}}\n"
        "[auth]\nanonymous_servers = [\"s\"]\n"
        "[audit]\npath = \"audit/guard.jsonl\"\ndurability = \"always\"\n"
        f"signing_key = {json.dumps(str(tmp_path / 'keys' / devkeys.AUDIT_PRIVATE_KEY))}\n")
    return cfg


async def upstream_received(received: Path, needle: str, timeout: float = 60.0) -> None:
    """Wait until the upstream has written the forwarded call to its record file."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if received.exists() and needle in received.read_text():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"the upstream never received {needle}")


@pytest.mark.slow
async def test_sigkill_right_after_forward_leaves_the_call_in_the_log_in_flight_at_crash(tmp_path: Path) -> None:
    port = free_port()
    received = tmp_path / "received.jsonl"
    cfg = config(tmp_path, port, received)
    audit_dir = tmp_path / "audit"
    async with guard_process(cfg, port) as proc:
        async with connect(f"ws://127.0.0.1:{port}/mcp/s", subprotocols=["mcp"]) as ws:
            assert (await call(ws, req(1, "tools/call", {"name": "lookup"})))["id"] == 1  # answered: has an outcome
            await ws.send(json.dumps(req(2, "tools/call", {"name": "block", "arguments": {"q": "x"}})))
            await upstream_received(received, '"block"')
            proc.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
    records = list(reader.records([audit_dir]))
    calls = [r for r in records if r["guard"].get("target", {}).get("name") == "block"]
    assert len(calls) == 1, calls  # the executed call is in the log
    assert calls[0]["guard"]["write_ahead"] == "always" and calls[0]["event"]["type"] == ["access", "allowed"]
    lookup = next(r for r in records if r["guard"].get("target", {}).get("name") == "lookup"
                  and r["guard"]["rpc"]["kind"] == "request")
    answer = next(r for r in records if r["guard"].get("rpc", {}).get("kind") == "result")
    assert answer["guard"]["request"]["event_id"] == lookup["event"]["id"]  # the outcome refers to its request
    key = load_verify_key(tmp_path / "keys" / devkeys.AUDIT_PUBLIC_KEY)
    crashed = verify([audit_dir], keys=[key])  # killed before any checkpoint: nothing signed yet
    assert crashed.in_flight == 1 and not [i for i in crashed.issues if i.kind == "tampered"], crashed.render()
    # A restart (the dead guard's lock went with it) continues the chain; its clean stop signs it all.
    async with guard_process(cfg, port) as again:
        async with connect(f"ws://127.0.0.1:{port}/mcp/s", subprotocols=["mcp"]) as ws:
            assert (await call(ws, req(3, "ping")))["id"] == 3  # the restarted guard serves
        again.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(again.wait(), 40) == 0
    result = verify([audit_dir], keys=[key])
    assert result.status == "in_flight" and result.in_flight == 1, result.render()
    issue = next(i for i in result.issues if i.kind == "in_flight")
    assert issue.where is not None and issue.where.seq == calls[0]["guard"]["chain"]["seq"]
    pub = str(tmp_path / "keys" / devkeys.AUDIT_PUBLIC_KEY)
    assert main(["audit", "verify", str(audit_dir), "--key", pub]) == EXIT_IN_FLIGHT


@pytest.mark.parametrize("durability", ["always", "group", "off"])
async def test_request_record_is_in_the_file_before_the_stage_lets_it_go(tmp_path: Path,
                                                                         durability: Durability) -> None:
    clock = Clock()
    new_id = ids()
    stage = AuditStage(make_log(tmp_path, clock, new_id=new_id), now=clock, new_id=new_id, durability=durability,
                       group_commit=0.002)
    ctx = call_ctx("lookup")
    await stage.process(ctx)
    on_disk = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert on_disk[-1]["event"]["id"] == ctx.request.audit_id if ctx.request else False
    assert on_disk[-1]["guard"]["write_ahead"] == durability
    await stage.process(result_ctx(request=ctx.request))
    await stage.aclose()
    assert verify([tmp_path], keys=[KEY.public]).status == "intact"


async def test_concurrent_group_commits_share_writes(tmp_path: Path) -> None:
    stage = AuditStage(make_log(tmp_path), durability="group", group_commit=0.005)
    contexts = [call_ctx("lookup", rid=i) for i in range(50)]
    await asyncio.gather(*(stage.process(c) for c in contexts))
    ids_on_disk = {json.loads(line)["event"]["id"] for line in (tmp_path / "audit.jsonl").read_text().splitlines()}
    assert all(c.request is not None and c.request.audit_id in ids_on_disk for c in contexts)
    await stage.aclose()



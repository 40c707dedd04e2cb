"""``guard connect``: the stdio bridge, driven by the official SDK's stdio client against a running guard.

The SDK launches ``guard connect URL`` exactly as a host such as Claude Desktop would; the
bridge speaks Streamable HTTP (both eras) or WebSocket to guard. Results equal the same client
talking to the demo server directly; a refused token, an unreachable guard and a lost
connection each end the bridge with its documented exit status and a reason on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError, StdioServerParameters

from guard.auth.cli import mint_dev_token
from guard.connect import EXIT_LOST, EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from guard.devkeys import load_dev_signing_key
from tests.e2e.clients import direct
from tests.e2e.test_full_stack import stack
from tests.e2e.test_relay_mcp2 import SCRIPT, normalize, stdio_config
from tests.front.helpers import ROOT, http, legacy_init
from tests.support.guard_server import free_port, running_guard, running_runtime

pytestmark = pytest.mark.e2e


def bridge(url: str, *args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "guard.cli", "connect", url, *args],
                                 env=env or {}, cwd=str(ROOT))


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


async def run_bridge(url: str, *args: str, stdin: bytes, timeout: float = 30) -> tuple[int, bytes, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "guard.cli", "connect", url, *args, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


@pytest.mark.parametrize(("mode", "scheme"), [("legacy", "http"), ("2026-07-28", "http"), ("legacy", "ws")])
async def test_sdk_stdio_client_through_the_bridge_equals_direct(mode: str, scheme: str) -> None:
    script = {"steps": SCRIPT, "log_level": "info"}
    async with running_guard(stdio_config()) as base:
        url = (http(base) if scheme == "http" else base) + "/mcp/demo"
        via = await direct.run_script(bridge(url), script, mode=mode)
    straight = await direct.run_script(direct.demo_params(), script, mode=mode)
    assert "error" not in via, via
    assert normalize(via) == normalize(straight)


async def test_bridge_carries_the_token_and_guard_applies_policy(tmp_path: Path) -> None:
    runtime, tokens = stack(tmp_path, tmp_path / "record.jsonl")
    token_file = tmp_path / "alice.token"
    token_file.write_text(tokens["alice"] + "\n")
    async with running_runtime(runtime) as base:
        params = bridge(f"{http(base)}/mcp/demo", "--token-file", str(token_file))
        async with Client(params, mode="legacy") as alice:
            found = await alice.call_tool("find_customer", {"query": "Johnson"})
            assert "<pii:EMAIL_ADDRESS:" in json.dumps(found.model_dump(mode="json"))
            with pytest.raises(MCPError) as info:
                await alice.call_tool("delete_customer", {"customer_id": "C001"})
            assert info.value.error.code == -31001
        env_params = bridge(f"{base}/mcp/demo", env={"GUARD_TOKEN": tokens["bob"]})  # WebSocket, token from env
        async with Client(env_params, mode="legacy") as bob:
            assert "send_message" in {t.name for t in (await bob.list_tools()).tools}


async def test_refused_token_fails_the_sdk_client_and_exits_3_with_the_reason(tmp_path: Path) -> None:
    runtime, _ = stack(tmp_path, tmp_path / "record.jsonl")
    expired = mint_dev_token(load_dev_signing_key(tmp_path / "dev" / "keys"), subject="bob", roles=["support"], ttl=1,
                             audience=["guard-dev"], issuer="guard-dev", extra={}, clock=lambda: time.time() - 3600)
    token_file = tmp_path / "expired.token"
    token_file.write_text(expired)
    async with running_runtime(runtime) as base:
        url = f"{http(base)}/mcp/demo"
        with pytest.raises(BaseException) as info:  # the bridge answers the pending initialize with guard's reason
            async with Client(bridge(url, "--token-file", str(token_file)), mode="legacy") as client:
                await client.list_tools()
        errors = [e for e in leaves(info.value) if isinstance(e, MCPError)]
        assert errors and errors[0].error.code == -31003 and "token expired" in errors[0].error.message
        line = (json.dumps(legacy_init()) + "\n").encode()
        for target in (url, f"{base}/mcp/demo"):
            code, out, err = await run_bridge(target, "--token-file", str(token_file), stdin=line)
            assert code == EXIT_REFUSED, err
            assert "refused the token" in err and "token expired" in err
            assert expired not in err
            if target.startswith("http"):  # the pending initialize was answered, not left hanging
                reply = json.loads(out.decode().splitlines()[0])
                assert reply["id"] == 1 and reply["error"]["code"] == -31003
                assert "token expired" in reply["error"]["message"]


async def test_unreachable_guard_exits_4() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp/demo"
    code, out, err = await run_bridge(url, stdin=(json.dumps(legacy_init()) + "\n").encode())
    assert code == EXIT_UNREACHABLE and "cannot reach guard" in err
    assert json.loads(out.decode().splitlines()[0])["error"]["code"] == -31004
    code, _, err = await run_bridge(url.replace("http", "ws"), stdin=b"")
    assert code == EXIT_UNREACHABLE and "cannot reach guard" in err


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_lost_connection_exits_5(scheme: str) -> None:
    port = free_port()
    cfg: dict[str, Any] = {**stdio_config(), "server": {"port": port}}
    proc = None
    async with running_guard(cfg) as base:
        url = (http(base) if scheme == "http" else base) + "/mcp/demo"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "guard.cli", "connect", url, cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps(legacy_init()) + "\n").encode())
        await proc.stdin.drain()
        assert "result" in json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        await proc.stdin.drain()
        await asyncio.sleep(0.5)
    # guard is gone: over WebSocket the bridge sees the close at once, over HTTP the next request finds out
    with contextlib.suppress(ConnectionError):
        proc.stdin.write(b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}\n')
        await proc.stdin.drain()
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == EXIT_LOST, err
    assert b"lost the connection" in err or b"closed the connection" in err
    if out.strip():
        assert json.loads(out.decode().splitlines()[-1])["error"]["code"] == -31004


async def test_token_command_supplies_the_token_and_a_failing_command_exits_2(tmp_path: Path) -> None:
    """``--token-command`` runs a credential helper (as ``gcloud auth print-identity-token`` would)."""
    runtime, tokens = stack(tmp_path, tmp_path / "record.jsonl")
    (tmp_path / "bob.token").write_text(tokens["bob"])
    helper = f"{sys.executable} -c \"print(open({str(tmp_path / 'bob.token')!r}).read())\""
    async with running_runtime(runtime) as base:
        url = f"{http(base)}/mcp/demo"
        async with Client(bridge(url, "--token-command", helper), mode="legacy") as bob:
            assert "send_message" in {t.name for t in (await bob.list_tools()).tools}  # bob's role, from the command
        failing = f"{sys.executable} -c \"raise SystemExit(7)\""
        line = (json.dumps(legacy_init()) + "\n").encode()
        code, _, err = await run_bridge(url, "--token-command", failing, stdin=line)
    assert code == 2, err
    assert "the token command exited 7 without printing a token" in err


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_unknown_upstream_exits_2_and_a_closed_stdin_exits_0(scheme: str) -> None:
    """A typo in the upstream name is a usage error on both transports, said once on stderr."""
    cfg: dict[str, Any] = {**stdio_config(), "server": {"port": free_port()}}
    async with running_guard(cfg) as base:
        root = http(base) if scheme == "http" else base
        init = (json.dumps(legacy_init()) + "\n").encode()
        code, out, err = await run_bridge(root + "/mcp/demoo", stdin=init)
        assert code == EXIT_USAGE, err
        assert "demoo" in err and err.count("\n") == 1
        if scheme == "http":  # the host's pending initialize was answered before the exit
            assert json.loads(out.decode().splitlines()[0])["error"]["code"] == -31004
        initialized = b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
        code, out, err = await run_bridge(root + "/mcp/demo", stdin=init + initialized)
        assert code == EXIT_OK, err
        assert "result" in json.loads(out.decode().splitlines()[0])


async def test_an_expired_http_session_is_reestablished_and_the_session_is_deleted_at_exit() -> None:
    """The host never sees guard's session expire (the bridge replays its handshake), and at exit
    the bridge ends its session: with a cap of one session per principal, a new one opens at once."""
    import httpx

    from tests.front.helpers import open_session

    cfg: dict[str, Any] = {**stdio_config(),
                           "server": {"port": free_port(), "idle_timeout": 1.0, "max_connections_per_principal": 1}}
    async with running_guard(cfg) as base:
        url = http(base) + "/mcp/demo"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "guard.cli", "connect", url, cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps(legacy_init()) + "\n").encode())
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        await proc.stdin.drain()
        assert "result" in json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        await asyncio.sleep(3.0)  # idle past idle_timeout: guard ends the session
        proc.stdin.write(b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}\n')
        await proc.stdin.drain()
        reply = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert reply["id"] == 2 and "tools" in reply["result"], reply
        proc.stdin.close()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == EXIT_OK, err
        assert b"the session expired; re-established" in err
        async with httpx.AsyncClient(base_url=http(base), timeout=30) as client:
            await open_session(client, "/mcp/demo")  # not 429: the bridge's session was deleted at exit


@pytest.mark.parametrize(("args", "said"), [
    (["ftp://127.0.0.1/mcp/demo"], "URL must be http(s)://HOST/mcp/NAME"),
    (["http:///mcp/demo"], "URL must be http(s)://HOST/mcp/NAME"),
    (["http://127.0.0.1:9/mcp/demo", "--token-file", "EMPTY"], "is empty"),
    (["http://127.0.0.1:9/mcp/demo", "--token-file", "MISSING"], "cannot read the token file"),
    (["http://127.0.0.1:9/mcp/demo", "--token-file", "EMPTY", "--token-env", "T"], "give at most one of"),
], ids=["scheme", "no-host", "empty-token-file", "missing-token-file", "two-sources"])
async def test_usage_errors_exit_2_with_one_line_before_any_connection(args: list[str], said: str,
                                                                         tmp_path: Path) -> None:
    (tmp_path / "EMPTY").write_text("\n")
    args = [str(tmp_path / a) if a in ("EMPTY", "MISSING") else a for a in args]
    code, out, err = await run_bridge(args[0], *args[1:], stdin=b"")
    assert code == 2 and said in err and err.count("\n") == 1, err
    assert out == b""

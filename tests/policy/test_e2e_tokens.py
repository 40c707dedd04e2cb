"""End to end: argument rules judge protected-value tokens as the values the upstream receives.

The stack ``guard demo`` configures (dev JWTs, the shipped policy and PII rules, audit), a real
guard on loopback, the official SDK 2.x client over WebSocket, and the bundled demo upstream
recording every request it receives (``GUARD_DEMO_RECORD``).

The attack: ``find_customer`` echoes its query, so searching for ``attacker@evil.com`` hands the
caller the token of an address of its choice; the shipped policy let ``support`` send mail to
any token (``to glob <pii:EMAIL_ADDRESS:**>``) and the PII stage then restored the address
upstream. And a deterministic token minted in one principal's session could be replayed or
compared by another principal.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError

from guard.auth.cli import mint_dev_token
from guard.client import websocket_client
from guard.config import parse
from guard.demo.cli import demo_config, prepare
from guard.demo.server import read_record
from guard.devkeys import load_dev_signing_key
from guard.runtime import build_runtime
from tests.support.guard_server import running_runtime

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ATTACKER = "attacker@evil.com"
CUSTOMER = "alice.johnson@example.com"


@contextlib.asynccontextmanager
async def demo_stack(tmp_path: Path, record: Path) -> AsyncIterator[tuple[str, dict[str, str]]]:
    dev = tmp_path / "dev"
    _, tokens = prepare(dev, 0)
    raw = tomllib.loads(demo_config(dev, ROOT / "policies", 0))
    raw["upstreams"]["demo"]["env"] = {"GUARD_DEMO_RECORD": str(record)}
    raw["pii"]["workers"] = 0  # the analyzer in a thread: starts faster on a loaded machine
    # a second support user, to show that tokens do not travel between principals
    tokens["erin"] = mint_dev_token(load_dev_signing_key(dev / "keys"), subject="erin", roles=["support"],
                                    ttl=600, audience=["guard-dev"], issuer="guard-dev", extra={})
    async with running_runtime(build_runtime(parse(raw))) as base:
        yield f"{base}/mcp/demo", tokens


def session(url: str, token: str) -> Client:
    return Client(websocket_client(url, headers={"Authorization": f"Bearer {token}"}), mode="legacy")


async def token_for(client: Client, value: str) -> str:
    """The token guard hands this client for ``value``: search for it, read the echoed query."""
    found = await client.call_tool("find_customer", {"query": value})
    echoed = found.structured_content["query"]  # type: ignore[index]
    assert isinstance(echoed, str) and echoed.startswith("<pii:EMAIL_ADDRESS:"), echoed
    return echoed


def sent_to(record: Path) -> list[Any]:
    return [(e.get("arguments") or {}).get("to") for e in read_record(record) if e.get("name") == "send_message"]


async def error_code(coro: Any) -> int:
    with pytest.raises(MCPError) as info:
        await coro
    return info.value.error.code


async def test_token_launders_value_past_argument_rule(tmp_path: Path) -> None:
    """A value the policy refuses in clear (``to glob *@example.com``) is refused as a token too."""
    record = tmp_path / "record.jsonl"
    async with demo_stack(tmp_path, record) as (url, tokens), session(url, tokens["bob"]) as bob:
        laundered = await token_for(bob, ATTACKER)
        assert await error_code(bob.call_tool("send_message", {"to": ATTACKER, "body": "x"})) == -31001
        assert await error_code(bob.call_tool("send_message", {"to": laundered, "body": "x"})) == -31001
        assert await error_code(bob.call_tool("send_message", {"to": f"Mallory <{laundered}>", "body": "x"})) \
            == -31001
        # the same rule still lets a token through when the address it opens to is allowed
        customer = await token_for(bob, CUSTOMER)
        sent = await bob.call_tool("send_message", {"to": customer, "body": "Your renewal"})
        assert not sent.is_error
    assert sent_to(record) == [CUSTOMER], "the laundered address reached the upstream"


async def test_token_from_another_principal_does_not_open(tmp_path: Path) -> None:
    """Tokens are bound to the principal: erin cannot replay bob's token (-31001 where a condition reads
    it, -31010 where none does), and her token for the same address differs from his."""
    record = tmp_path / "record.jsonl"
    async with demo_stack(tmp_path, record) as (url, tokens):
        async with session(url, tokens["bob"]) as bob:
            bobs = await token_for(bob, CUSTOMER)
        async with session(url, tokens["erin"]) as erin:
            assert await error_code(erin.call_tool("send_message", {"to": bobs, "body": "x"})) == -31001
            assert await error_code(erin.call_tool("find_customer", {"query": bobs})) == -31010
            erins = await token_for(erin, CUSTOMER)
            assert erins != bobs, "equal tokens across principals would be an equality oracle"
            assert not (await erin.call_tool("send_message", {"to": erins, "body": "hi"})).is_error
    assert sent_to(record) == [CUSTOMER]
    queries = [(e.get("arguments") or {}).get("query") for e in read_record(record) if e.get("name") == "find_customer"]
    assert bobs not in queries, "a token that does not open reached the upstream"

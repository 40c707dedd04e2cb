"""The whole stack as `guard demo` configures it: JWT, the shipped Casbin policy, PII rules, audit.

Proves, with the official SDK 2.x client and a recording demo upstream:

* the model sees tokens, never raw values;
* a principal whose policy grants ``pii/reveal`` gets the original restored upstream;
* a principal without it cannot restore (the upstream sees only the token);
* a tampered token never reaches the upstream: -31001 where an argument rule would have to judge
  it (``send_message``'s ``to``), -31010 from the PII stage where none does;
* the audit log verifies intact and holds none of the personal data or tokens.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError

from guard.audit.verify import verify
from guard.client import websocket_client
from guard.config import parse
from guard.crypto.signing import load_verify_key
from guard.demo.cli import demo_config, prepare
from guard.demo.server import read_record
from guard.runtime import build_runtime
from tests.support.guard_server import running_runtime

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EMAIL = "alice.johnson@example.com"
CARD_FORMS = ("4111-1111-1111-1111", "4111111111111111", "4111 1111 1111 1111")
"""The demo customer's card as stored and as its digits: never in a result or the audit log. (A bare
"4111" is not a secret: it turns up in a record hash or a random token now and then.)"""


def stack(tmp_path: Path, record: Path) -> tuple[Any, dict[str, str]]:
    dev = tmp_path / "dev"
    _, tokens = prepare(dev, 0)
    policies = tmp_path / "policies"
    policies.mkdir()
    for name in ("model.conf", "pii.toml"):
        (policies / name).write_text((ROOT / "policies" / name).read_text())
    # The shipped policy plus a role that may send messages but not reveal protected values.
    (policies / "policy.csv").write_text((ROOT / "policies" / "policy.csv").read_text() + "\n"
                                         "p, role:outreach, demo, tools/list, *, allow\n"
                                         "p, role:outreach, demo, tools/call, find_customer, allow\n"
                                         "p, role:outreach, demo, tools/call, send_message, allow\n")
    raw = tomllib.loads(demo_config(dev, policies, 0))
    raw["upstreams"]["demo"]["env"] = {"GUARD_DEMO_RECORD": str(record)}
    from guard.auth.cli import mint_dev_token
    from guard.devkeys import load_dev_signing_key

    tokens["dora"] = mint_dev_token(load_dev_signing_key(dev / "keys"), subject="dora", roles=["outreach"],
                                    ttl=600, audience=["guard-dev"], issuer="guard-dev", extra={})
    return build_runtime(parse(raw)), tokens


def sent_to(record: Path) -> list[str]:
    return [str((r.get("arguments") or {}).get("to")) for r in read_record(record) if r.get("name") == "send_message"]


async def test_reveal_round_trip_is_governed_by_policy(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    runtime, tokens = stack(tmp_path, record)
    async with running_runtime(runtime) as base:
        url = f"{base}/mcp/demo"

        async def session(user: str) -> Client:
            return Client(websocket_client(url, headers={"Authorization": f"Bearer {tokens[user]}"}), mode="legacy")

        async with await session("bob") as bob:
            found = await bob.call_tool("find_customer", {"query": "Johnson"})
            text = found.content[0].text  # type: ignore[union-attr]
            assert EMAIL not in text and not any(form in json.dumps(found.structured_content) for form in CARD_FORMS)
            token = found.structured_content["customers"][0]["email"]  # type: ignore[index]
            assert token.startswith("<pii:EMAIL_ADDRESS:")
            sent = await bob.call_tool("send_message", {"to": token, "body": "Your renewal"})
            assert not sent.is_error
            assert EMAIL not in json.dumps(sent.model_dump(mode="json"))  # the echo is protected again
            tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
            with pytest.raises(MCPError) as info:  # the argument rule on "to" cannot judge it: not allowed
                await bob.call_tool("send_message", {"to": tampered, "body": "x"})
            assert info.value.error.code == -31001
            with pytest.raises(MCPError) as info:  # no condition reads it: the PII stage refuses it
                await bob.call_tool("find_customer", {"query": tampered})
            assert info.value.error.code == -31010

        async with await session("dora") as dora:
            found = await dora.call_tool("find_customer", {"query": "Johnson"})
            token = found.structured_content["customers"][0]["email"]  # type: ignore[index]
            await dora.call_tool("send_message", {"to": token, "body": "hello"})

        async with await session("alice") as alice:  # analyst: may not send at all
            tools = {t.name for t in (await alice.list_tools()).tools}
            assert "send_message" not in tools and "delete_customer" not in tools
            with pytest.raises(MCPError) as info:
                await alice.call_tool("delete_customer", {"customer_id": "C001"})
            assert info.value.error.code == -31001

    assert sent_to(record) == [EMAIL, token]  # bob's restored; dora's stayed a token; tampered never arrived
    assert all(r.get("name") != "delete_customer" for r in read_record(record))

    audit_dir = tmp_path / "dev" / "audit"
    key = load_verify_key(tmp_path / "dev" / "keys" / "audit-signing-key.pub.pem")
    assert verify([audit_dir], keys=[key]).status == "intact"
    dumped = "".join(p.read_text() for p in audit_dir.iterdir())
    for secret in (EMAIL, token, *tokens.values(), *CARD_FORMS):
        assert secret not in dumped

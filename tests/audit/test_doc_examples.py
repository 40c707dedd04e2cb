"""The example records in docs/compliance.md are a real run's records (issue 15).

The README once showed ``"reason": "policy_deny"``, a value guard never wrote. Now the examples
are generated from a real guard (JWT, Casbin policy, PII rules, audit; the scripted stdio
upstream over a real WebSocket) and this test compares them with a fresh run's records field
for field: the same keys at every level and the same value types (values differ per run).

Regenerate the examples after a schema change::

    .venv/bin/python -m tests.audit.test_doc_examples
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from guard import devkeys
from guard.audit import reader
from guard.auth.cli import mint_dev_token
from tests.core.test_relay_bad_input import call, req
from tests.support.guard_server import running_guard

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "compliance.md"
SCRIPT = str(ROOT / "tests" / "support" / "scripted_upstream.py")
AUD, ISS = "https://guard.example", "https://idp.example"
POLICY = "p, role:analyst, crm, tools/call, lookup, allow\np, role:analyst, crm, tools/call, pay, allow\n"
BLOCK = re.compile(r"<!-- example: (?P<name>[a-z-]+) -->\n```json\n(?P<body>.*?)\n```", re.S)
NAMES = ("allowed-request", "result", "denied-call", "pii-blocked", "auth-failure")


async def real_records(tmp: Path) -> dict[str, dict[str, Any]]:
    """One record of each documented kind, from a real guard."""
    keys = tmp / "keys"
    devkeys.generate_all(keys)
    (tmp / "policy.csv").write_text(POLICY)
    settings = {
        "upstreams": {"crm": {"command": sys.executable, "args": [SCRIPT], "terminate_grace": 1.0}},
        "auth": {"audience": AUD, "issuers": [{"issuer": ISS, "algorithms": ["ES256"],
                                               "public_keys": [str(keys / devkeys.AUTH_JWKS)]}]},
        "policy": {"policy": str(tmp / "policy.csv")},
        "pii": {"rules": str(ROOT / "policies" / "pii.toml"), "keyring_file": str(keys / "pii-keyring.json"),
                "deployment_id": "docs"},
        "audit": {"signing_key": str(keys / devkeys.AUDIT_PRIVATE_KEY), "path": str(tmp / "audit" / "g.jsonl"),
                  "replica": "guard-0"},
    }
    signer = devkeys.load_dev_signing_key(keys)
    token = mint_dev_token(signer, subject="bob", roles=("analyst",), ttl=3600, issuer=ISS, audience=(AUD,))
    async with running_guard(settings) as base:
        url = f"{base}/mcp/crm"
        async with connect(url, subprotocols=["mcp"], additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert "result" in await call(ws, req(1, "tools/call", {"name": "lookup", "arguments": {"id": "C1"}}))
            assert "error" in await call(ws, req(2, "tools/call", {"name": "export_all", "arguments": {}}))
            card = {"name": "pay", "arguments": {"card": "4111 1111 1111 1111"}}
            assert "error" in await call(ws, req(3, "tools/call", card))
        with pytest.raises(Exception):  # noqa: B017 (any refusal will do: it is the record we want)
            async with connect(url, subprotocols=["mcp"], additional_headers={"Authorization": "Bearer x.y.z"}):
                pass
    records = list(reader.records([tmp / "audit"]))

    def one(**want: Any) -> dict[str, Any]:
        def get(rec: dict[str, Any], dotted: str) -> Any:
            value: Any = rec
            for part in dotted.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value
        found = [r for r in records if all(get(r, k.replace("__", ".")) == v for k, v in want.items())]
        assert found, want
        return found[0]

    return {
        "allowed-request": one(guard__rpc__kind="request", guard__target__name="lookup"),
        "result": one(guard__rpc__kind="result", guard__target__name="lookup"),
        "denied-call": one(guard__target__name="export_all"),
        "pii-blocked": one(guard__target__name="pay"),
        "auth-failure": one(event__action="auth_failure"),
    }


def shape(value: Any) -> Any:
    """Keys and value types, not values (lists: the set of their elements' shapes)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        shapes = {json.dumps(shape(v), sort_keys=True) for v in value}
        return sorted(shapes)
    return type(value).__name__


def documented() -> dict[str, dict[str, Any]]:
    text = DOC.read_text(encoding="utf-8")
    return {m.group("name"): json.loads(m.group("body")) for m in BLOCK.finditer(text)}


@pytest.mark.e2e
async def test_documented_example_records_match_a_real_run_field_for_field(tmp_path: Path) -> None:
    docs = documented()
    assert sorted(docs) == sorted(NAMES)
    real = await real_records(tmp_path)
    for name in NAMES:
        assert shape(docs[name]) == shape(real[name]), f"docs/compliance.md example {name!r} is stale: regenerate"
    assert docs["denied-call"]["guard"]["decision"]["reason"] == "default_deny"  # values guard really writes
    assert docs["pii-blocked"]["guard"]["decision"] == {"allowed": False, "reason": "pii_blocked", "stage": "pii"}


def regenerate() -> None:
    """Rewrite the example blocks of docs/compliance.md from a real run."""
    with tempfile.TemporaryDirectory() as tmp:
        real = asyncio.run(real_records(Path(tmp)))
    text = DOC.read_text(encoding="utf-8")

    def block(match: re.Match[str]) -> str:
        body = orjson.dumps(real[match.group("name")], option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        return f"<!-- example: {match.group('name')} -->\n```json\n{body}\n```"

    DOC.write_text(BLOCK.sub(block, text), encoding="utf-8")


if __name__ == "__main__":
    regenerate()

"""End to end: the official SDK 2.x client -> guard (WebSocket) -> demo server, audited.

An allowed call, a denied call, a PII-bearing result and an authentication failure each
produce the documented records; the log verifies intact; and none of the PII values the
demo server returned, the argument PII the client sent, or the bearer tokens appear in the
audit files or in guard's logs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from guard import devkeys
from guard.audit import reader
from guard.audit.verify import verify
from guard.auth.cli import mint_dev_token
from guard.client import websocket_client
from guard.config import Settings, parse
from guard.crypto.signing import load_verify_key
from guard.demo.data import CUSTOMERS
from guard.runtime import build_runtime
from tests.e2e.clients import direct
from tests.support.guard_server import running_runtime

pytestmark = pytest.mark.e2e

AUD = "https://guard.test"
ISS = "guard-audit-e2e"
POLICY = """\
p, role:analyst, demo, tools/list, *, allow
p, role:analyst, demo, tools/call, find_customer, allow
p, role:analyst, demo, tools/call, send_message, allow
"""
ALICE = CUSTOMERS[0]
ARGUMENT_PII = "mallory.secret@example.net"


@contextlib.asynccontextmanager
async def guard(settings: Settings) -> AsyncIterator[str]:
    async with running_runtime(build_runtime(settings)) as base:
        yield f"{base}/mcp/demo"


def records(directory: Path) -> list[dict[str, Any]]:
    return list(reader.records([directory]))


def find(recs: list[dict[str, Any]], **want: Any) -> list[dict[str, Any]]:
    def get(rec: dict[str, Any], dotted: str) -> Any:
        value: Any = rec
        for part in dotted.split("__"):
            value = value.get(part) if isinstance(value, dict) else None
        return value
    return [r for r in recs if all(get(r, k) == v for k, v in want.items())]


@contextlib.contextmanager
def guard_logging(level: int) -> Iterator[io.StringIO]:
    """guard's production log handler (``guard.logs.configure``: JSON + credential filter) into a buffer."""
    from guard.auth.logfilter import CredentialRedactingFilter
    from guard.logs import JsonFormatter, cap_third_party_loggers

    cap_third_party_loggers()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CredentialRedactingFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.mark.parametrize("level", [
    logging.INFO,
    logging.DEBUG,
])
async def test_audited_session_records_every_outcome_and_leaks_nothing(tmp_path: Path, level: int,
                                                                       capfd: pytest.CaptureFixture[str]) -> None:
    with guard_logging(level) as logs:
        await _session(tmp_path, logs, capfd)


async def _session(tmp_path: Path, logs: io.StringIO, capfd: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    devkeys.generate_all(keys)
    policy = tmp_path / "policy.csv"
    policy.write_text(POLICY, encoding="utf-8")
    audit_dir = tmp_path / "audit"
    settings = parse({
        "upstreams": {"demo": {"command": sys.executable, "args": ["-m", "guard.demo"]}},
        "auth": {"audience": AUD, "issuers": [{"issuer": ISS, "algorithms": ["ES256"],
                                               "public_keys": [str(keys / devkeys.AUTH_JWKS)]}]},
        "policy": {"policy": str(policy)},
        "pii": {"rules": str(Path(__file__).resolve().parents[2] / "policies" / "pii.toml"),
                "keyring_file": str(keys / "pii-keyring.json"), "deployment_id": "audit-e2e"},
        "audit": {"signing_key": str(keys / devkeys.AUDIT_PRIVATE_KEY), "path": str(audit_dir / "guard.jsonl"),
                  "checkpoint_path": str(tmp_path / "cp" / "checkpoints.jsonl")},
    })
    signer = devkeys.load_dev_signing_key(keys)
    good = mint_dev_token(signer, subject="alice", roles=("analyst",), ttl=300, issuer=ISS, audience=(AUD,))
    foreign = mint_dev_token(signer, subject="alice", roles=("analyst",), ttl=300, issuer=ISS,
                             audience=("https://elsewhere.test",))
    script = {"steps": [
        {"op": "call_tool", "name": "find_customer", "arguments": {"query": "Alice"}},
        {"op": "call_tool", "name": "delete_customer", "arguments": {"customer_id": "C002"}},
        {"op": "call_tool", "name": "send_message", "arguments": {"to": ARGUMENT_PII, "body": "hello"}},
    ]}
    async with guard(settings) as url:
        via = await direct.run_script(websocket_client(url, headers={"Authorization": f"Bearer {good}"}),
                                      script, mode="legacy")
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, subprotocols=["mcp"],  # type: ignore[list-item]
                               additional_headers={"Authorization": f"Bearer {foreign}"}):
                pass
        assert refused.value.response.status_code == 401
    assert "error" not in via, via
    results = via["results"]
    assert "result" in results[0] and results[1]["error"]["code"] == -31001 and "result" in results[2]

    recs = records(audit_dir)
    # The allowed call: a request record with the deciding rule, and its result with PII metadata.
    allowed = find(recs, event__action="tools/call", guard__rpc__kind="request", guard__target__name="find_customer")
    assert len(allowed) == 1 and allowed[0]["event"]["outcome"] == "success"
    assert allowed[0]["user"]["name"] == "alice" and allowed[0]["user"]["roles"] == ["analyst"]
    assert allowed[0]["guard"]["decision"]["allowed"] is True and allowed[0]["guard"]["principal"]["issuer"] == ISS
    result = find(recs, guard__rpc__kind="result", guard__target__name="find_customer")
    assert len(result) == 1 and result[0]["guard"]["upstream"]["outcome"] == "ok"
    assert result[0]["event"]["duration"] > 0
    pii = result[0]["guard"]["pii"]
    assert {"EMAIL_ADDRESS", "CREDIT_CARD"} <= set(pii["entity_types"]) and "tokenize" in pii["actions"]
    # The denied call.
    denied = find(recs, guard__target__name="delete_customer")
    assert len(denied) == 1 and denied[0]["event"]["type"] == ["access", "denied"]
    assert denied[0]["error"]["code"] == "-31001" and denied[0]["guard"]["verdict"]["stage"] == "authorize"
    # The refused handshake.
    failures = find(recs, event__action="auth_failure")
    assert len(failures) == 1 and failures[0]["event"]["outcome"] == "failure"
    assert failures[0]["http"]["response"]["status_code"] == 401
    assert failures[0]["client"]["ip"] == "127.0.0.1" and failures[0]["guard"]["auth"]["reason"]
    # The session's life cycle.
    assert find(recs, event__action="connect") and find(recs, event__action="close")

    public = load_verify_key(keys / devkeys.AUDIT_PUBLIC_KEY)
    outcome = verify([audit_dir], keys=[public], checkpoint_files=[tmp_path / "cp" / "checkpoints.jsonl"])
    assert outcome.status == "intact", outcome.render()

    # No leak: none of these bytes in the audit files or in anything guard logged.
    secrets = [good, foreign, ARGUMENT_PII, ALICE["email"], ALICE["phone"], ALICE["card_number"],
               ALICE["iban"], ALICE["address"], ALICE["date_of_birth"]]
    audit_bytes = b"".join(p.read_bytes() for p in audit_dir.glob("*.jsonl"))
    audit_bytes += (tmp_path / "cp" / "checkpoints.jsonl").read_bytes()
    logged = logs.getvalue()
    assert logged, "guard logged nothing: the capture is broken"
    logged += capfd.readouterr().err  # the PII analyzer processes log to the inherited stderr
    for secret in [*secrets, good.split(".")[2]]:  # the token signature alone counts as a leak too
        assert secret.encode() not in audit_bytes, secret
        leaks = [line[:160] for line in logged.splitlines() if secret in line]
        assert not leaks, leaks

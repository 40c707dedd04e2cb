"""``guard pii scan`` and ``guard pii keys`` (through guard's real argument parser)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard.cli import main
from guard.pii.keys import load_keyring_file
from tests.pii.conftest import RULES_FILE


def test_scan_prints_protected_message_and_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    msg = tmp_path / "m.json"
    msg.write_text(json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [
        {"type": "text", "text": "Reach alice@example.com, card 4111 1111 1111 1111"}]}}))
    assert main(["pii", "scan", str(msg), "--rules", str(RULES_FILE), "--tool", "find_customer"]) == 0
    out, err = capsys.readouterr()
    text = json.loads(out)["result"]["content"][0]["text"]
    assert "alice@example.com" not in text and "**** **** **** 1111" in text
    assert "EMAIL_ADDRESS" in err and "$.result.content[0].text" in err
    assert "alice@example.com" not in err


def test_scan_reports_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    msg = tmp_path / "m.json"
    msg.write_text(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                               "params": {"name": "pay", "arguments": {"card": "4111 1111 1111 1111"}}}))
    assert main(["pii", "scan", str(msg), "--rules", str(RULES_FILE), "--direction", "to_server"]) == 1
    assert "PII_BLOCKED" in capsys.readouterr().err


def test_keys_generate_and_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ring = tmp_path / "ring.json"
    assert main(["pii", "keys", "generate", str(ring)]) == 0
    assert main(["pii", "keys", "generate", str(ring)]) == 2
    assert main(["pii", "keys", "rotate", str(ring)]) == 0
    assert load_keyring_file(ring).primary == "k2"

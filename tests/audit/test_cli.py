"""guard audit verify|query|report|keygen through the real command line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard.cli import main
from guard.crypto.signing import load_verify_key
from tests.audit.helpers import KEY, read_lines, sample_log, write_lines


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    path = tmp_path / "audit.pub.pem"
    path.write_bytes(KEY.public.public_pem())
    return path


async def test_verify_exit_codes(tmp_path: Path, public_key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "log"
    await sample_log(log_dir, hours=1)
    assert main(["audit", "verify", str(log_dir), "--key", str(public_key)]) == 0
    assert "INTACT" in capsys.readouterr().out
    assert main(["audit", "verify", str(log_dir)]) == 3  # no key: signatures unverifiable
    capsys.readouterr()
    path = log_dir / "audit.jsonl"
    original = read_lines(path)
    with path.open("ab") as fh:
        fh.write(b'{"@timest')
    assert main(["audit", "verify", str(log_dir), "--key", str(public_key)]) == 4
    lines = list(original)
    victim = next(i for i, line in enumerate(lines) if b'"alice"' in line)
    lines[victim] = lines[victim].replace(b'"alice"', b'"alicf"')
    write_lines(path, lines)
    capsys.readouterr()
    assert main(["audit", "verify", str(log_dir), "--key", str(public_key), "--format", "json"]) == 5
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "tampered" and report["first_bad"]["line"] == victim + 1


async def test_query_and_report(tmp_path: Path, public_key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "log"
    await sample_log(log_dir, hours=1)
    assert main(["audit", "query", str(log_dir), "--decision", "deny", "--subject", "bob",
                 "--format", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(json.loads(line)["user"]["name"] == "bob" for line in lines)
    assert main(["audit", "query", str(log_dir), "--tool", "lookup", "--limit", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("TIME") and len(table) == 3
    assert main(["audit", "query", str(log_dir), "--since", "not-a-time"]) == 2
    out = tmp_path / "r.html"
    assert main(["audit", "report", str(log_dir), "--out", str(out), "--key", str(public_key),
                 "--since", "2026-01-01"]) == 0
    assert "INTACT" in out.read_text(encoding="utf-8")


async def test_keygen_and_config_driven_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "keys" / "audit.pem"
    assert main(["audit", "keygen", "--out", str(key)]) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    public = load_verify_key(tmp_path / "keys" / "audit.pub.pem")
    assert public.key_id in capsys.readouterr().out
    assert main(["audit", "keygen", "--out", str(key)]) == 1  # never overwrite silently
    config = tmp_path / "guard.toml"
    config.write_text(
        '[upstreams.crm]\ncommand = "true"\n[auth]\nanonymous_servers = ["crm"]\n'
        '[audit]\nsigning_key = "keys/audit.pem"\npath = "log/audit.jsonl"\ncheckpoint_path = "cp/cp.jsonl"\n',
        encoding="utf-8")
    from guard.audit.log import AuditLog
    from guard.config import load

    log = AuditLog.from_settings(load(config).audit)
    await log.start()
    await log.aclose()
    assert main(["audit", "verify", "--config", str(config)]) == 0
    assert (tmp_path / "cp" / "cp.jsonl").exists()


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify"]) == 2
    assert "give audit files" in capsys.readouterr().err

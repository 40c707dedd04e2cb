"""[audit] configuration: defaults, validation, and the hook in guard.config."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.audit.settings import AuditSettings, parse_audit
from guard.config import parse
from guard.configtools import Problems
from guard.errors import ConfigError
from tests.audit.helpers import KEY

UPSTREAM = {"upstreams": {"crm": {"command": "true"}}, "auth": {"anonymous_servers": ["crm"]}}


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.pem"
    path.write_bytes(KEY.private_pem())
    return path


def test_absent_section_means_audit_off() -> None:
    settings = parse(UPSTREAM)
    assert not settings.audit.enabled and not AuditSettings().enabled
    assert settings.audit.signing_key is None


def test_section_enables_audit_with_documented_defaults(tmp_path: Path) -> None:
    key_file(tmp_path)
    problems = Problems()
    s = parse_audit({"signing_key": "audit.pem"}, problems, tmp_path)
    assert not problems.items
    assert s.enabled and s.signing_key == tmp_path / "audit.pem"
    assert s.path == tmp_path / "audit" / "guard-audit.jsonl"
    assert (s.fsync, s.on_failure, s.checkpoint_every, s.checkpoint_interval) == ("denials", "close", 1000, 60.0)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    problems = Problems()
    parse_audit({"fsync": "sometimes", "on_failure": "ignore", "checkpoint_every": 0, "queue_size": -1,
                 "rotate_bytes": "big", "typo": 1, "path": "a.jsonl", "checkpoint_path": "a.jsonl"},
                problems, tmp_path)
    text = "\n".join(problems.items)
    for needle in ("audit.fsync", "audit.on_failure", "audit.checkpoint_every", "audit.queue_size",
                   "audit.rotate_bytes", "audit.typo", "audit.signing_key", "audit.checkpoint_path"):
        assert needle in text


def test_a_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "rsa.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match=r"audit\.signing_key"):
        parse({**UPSTREAM, "audit": {"signing_key": str(tmp_path / "rsa.pem")}})


def test_disabled_audit_needs_no_key(tmp_path: Path) -> None:
    settings = parse({**UPSTREAM, "audit": {"enabled": False}})
    assert not settings.audit.enabled


def test_key_path_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARD_AUDIT_KEY", str(key_file(tmp_path)))
    settings = parse({**UPSTREAM, "audit": {"signing_key": "${GUARD_AUDIT_KEY}", "on_failure": "open"}})
    assert settings.audit.signing_key == tmp_path / "audit.pem" and settings.audit.on_failure == "open"

"""Rules file and ``[pii]`` config parsing: every problem is reported, overrides resolve in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard import configtools as ct
from guard.config import parse
from guard.crypto.aead import KeyRing, b64url
from guard.errors import ConfigError
from guard.pii.keys import dump_keyring
from guard.pii.rules import parse_rules
from tests.pii.conftest import FIXED_SECRET, RULES_FILE


def rules_from(raw: dict) -> tuple:  # type: ignore[type-arg]
    problems = ct.Problems()
    return parse_rules(raw, problems), problems.items


def test_shipped_rules_parse_cleanly(rules) -> None:  # type: ignore[no-untyped-def]
    email = rules.resolve("EMAIL_ADDRESS", "other", "t")
    assert email.to_client.kind == "tokenize" and email.to_server.kind == "allow"
    assert rules.resolve("CREDIT_CARD", "x", None).to_server.kind == "block"
    assert rules.resolve("PHONE_NUMBER", "x", None).threshold == 0.8
    assert rules.resolve("PHONE_NUMBER", "x", None).protect_validated
    assert rules.context["DATE_TIME"] == ("birth", "born", "dob", "birthday", "birthdate")
    assert rules.resolve("UNLISTED", "x", None).to_client.kind == "allow"
    assert rules.uses_keys()
    assert "EMPLOYEE_ID" in (rules.detected_entities() or ())


def test_overrides_apply_in_file_order_with_globs() -> None:
    rules, problems = rules_from({
        "defaults": {"to_client": "allow"},
        "entities": {"EMAIL_ADDRESS": {"to_client": "encrypt", "threshold": 0.6}},
        "overrides": [
            {"server": "crm*", "entity": "EMAIL_ADDRESS", "to_client": "redact"},
            {"server": "crm-eu", "tool": "export_*", "entity": "EMAIL_ADDRESS", "to_client": "block"},
        ],
    })
    assert problems == []
    assert rules.resolve("EMAIL_ADDRESS", "hr", "x").to_client.kind == "encrypt"
    assert rules.resolve("EMAIL_ADDRESS", "crm-us", "x").to_client.kind == "redact"
    assert rules.resolve("EMAIL_ADDRESS", "crm-eu", "export_all").to_client.kind == "block"
    assert rules.resolve("EMAIL_ADDRESS", "crm-eu", None).to_client.kind == "redact"
    assert rules.resolve("EMAIL_ADDRESS", "crm-eu", "export_all").threshold == 0.6


def test_entity_glob_or_protective_default_detects_everything() -> None:
    rules, _ = rules_from({"overrides": [{"entity": "*", "to_client": "redact"}]})
    assert rules.detected_entities() is None
    rules, _ = rules_from({"defaults": {"to_client": "redact"}})
    assert rules.detected_entities() is None
    rules, _ = rules_from({"entities": {"EMAIL_ADDRESS": {"to_client": "mask"}}})
    assert rules.detected_entities() == {"EMAIL_ADDRESS"}
    assert not rules.uses_keys()


def test_every_problem_is_collected() -> None:
    _, problems = rules_from({
        "version": 2,
        "bogus": 1,
        "defaults": {"threshold": 1.5, "to_client": "explode"},
        "entities": {"lower": {"to_client": "mask"},
                     "EMAIL_ADDRESS": {"to_server": {"action": "mask", "keep_last": -1}}},
        "overrides": [{"server": "x", "colour": "red"}],
        "recognizers": [{"name": "r", "entity": "R", "patterns": [{"regex": "([", "score": 0.5}]},
                        {"name": "r2", "entity": "bad"}],
    })
    text = "\n".join(problems)
    for fragment in ("version", "bogus", "threshold", "to_client: action must be one of", "lower", "keep_last",
                     "colour", "invalid regular expression", "upper-case entity name", "needs patterns or a deny_list"):
        assert fragment in text, fragment


def _base(tmp_path: Path, pii: dict) -> dict:  # type: ignore[type-arg]
    return {"upstreams": {"demo": {"command": "python"}}, "auth": {"anonymous_servers": ["demo"]}, "pii": pii}


def test_config_pii_section_loads_rules_and_keyring(tmp_path: Path) -> None:
    ring_file = tmp_path / "ring.json"
    ring_file.write_text(dump_keyring(KeyRing("k1", {"k1": FIXED_SECRET})))
    settings = parse(_base(tmp_path, {"rules": str(RULES_FILE), "keyring_file": str(ring_file),
                                      "deployment_id": "d1", "fail_open": ["demo"]}))
    assert settings.pii.enabled and settings.pii.deployment_id == "d1"
    assert settings.pii.keyring is not None and settings.pii.keyring.primary == "k1"
    assert settings.pii.fail_open == {"demo"}


def test_config_without_pii_section_is_disabled() -> None:
    settings = parse({"upstreams": {"demo": {"command": "python"}}, "auth": {"anonymous_servers": ["demo"]}})
    assert not settings.pii.enabled


def test_config_keyring_from_env_and_inline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEST_PII_RING", dump_keyring(KeyRing("k7", {"k7": FIXED_SECRET})))
    settings = parse(_base(tmp_path, {"rules": str(RULES_FILE), "keyring_env": "TEST_PII_RING"}))
    assert settings.pii.keyring is not None and settings.pii.keyring.primary == "k7"
    monkeypatch.setenv("TEST_PII_K1", b64url(FIXED_SECRET))
    settings = parse(_base(tmp_path, {"rules": str(RULES_FILE), "keys": {"k1": "${TEST_PII_K1}"}}))
    assert settings.pii.keyring is not None and settings.pii.keyring.secrets["k1"] == FIXED_SECRET


def test_config_problems_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse(_base(tmp_path, {"rules": str(RULES_FILE), "timeout": -1, "fail_open": ["nope"], "colour": 1}))
    text = "\n".join(info.value.problems)
    for fragment in ("pii.timeout", "unknown upstream 'nope'", "pii.colour", "keyring_file"):
        assert fragment in text, fragment
    with pytest.raises(ConfigError) as info:
        parse(_base(tmp_path, {"rules": str(tmp_path / "missing.toml")}))
    assert "cannot read" in "\n".join(info.value.problems)
    bad_ring = tmp_path / "bad.json"
    bad_ring.write_text(json.dumps({"primary": "k1", "keys": {"k1": "AAAA"}}))
    with pytest.raises(ConfigError) as info:
        parse(_base(tmp_path, {"rules": str(RULES_FILE), "keyring_file": str(bad_ring)}))
    assert "at least 32 bytes" in "\n".join(info.value.problems)


def test_every_entity_type_guard_detects_is_on_in_the_shipped_rules(rules) -> None:  # type: ignore[no-untyped-def]
    from guard.pii.engine import Analyzer

    shipped = rules.detected_entities() or frozenset()
    not_personal = {"URL", "UUID"}  # not personal data by themselves; what they hold is found by its own type
    assert set(Analyzer(entities=None).entities) - not_personal <= shipped
    for entity in shipped:
        assert not rules.resolve(entity, "any", None).to_client.is_allow, entity


def test_protect_validated_and_context_parse() -> None:
    rules, problems = rules_from({"defaults": {"protect_validated": False},
                                  "entities": {"PHONE_NUMBER": {"protect_validated": True, "context": ["Tel"]}},
                                  "overrides": [{"tool": "t", "entity": "PHONE_NUMBER", "protect_validated": False}]})
    assert not problems
    assert not rules.resolve("EMAIL_ADDRESS", "s", None).protect_validated
    assert rules.resolve("PHONE_NUMBER", "s", None).protect_validated
    assert not rules.resolve("PHONE_NUMBER", "s", "t").protect_validated
    assert rules.context == {"PHONE_NUMBER": ("tel",)}
    _, problems = rules_from({"entities": {"PHONE_NUMBER": {"context": []}}})
    assert problems


def test_check_config_warns_when_a_threshold_lets_validated_values_through() -> None:
    rules, problems = rules_from({"entities": {
        "PHONE_NUMBER": {"protect_validated": False, "threshold": 0.5},
        "US_SSN": {"protect_validated": False, "threshold": 0.5},
        "IP_ADDRESS": {"threshold": 0.9}}})
    assert not problems
    warnings = rules.warnings()
    assert len(warnings) == 1 and "PHONE_NUMBER" in warnings[0] and "0.4" in warnings[0]


def test_shipped_rules_have_no_warnings(rules) -> None:  # type: ignore[no-untyped-def]
    assert rules.warnings() == []


def test_check_config_prints_the_warnings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    (tmp_path / "pii.toml").write_text('[entities.PHONE_NUMBER]\nprotect_validated = false\nthreshold = 0.6\n')
    (tmp_path / "guard.toml").write_text(
        '[upstreams.demo]\ncommand = "true"\n[auth]\nanonymous_servers = ["demo"]\n[pii]\nrules = "pii.toml"\n'
        'workers = 0\n')
    out = subprocess.run([sys.executable, "-m", "guard.cli", "check-config", str(tmp_path / "guard.toml")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "warning: pii.rules.entities.PHONE_NUMBER: threshold 0.6 with protect_validated = false" in out.stdout

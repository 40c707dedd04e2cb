"""``[policy]`` configuration parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.config import parse
from guard.errors import ConfigError
from guard.policy.settings import PolicySettings

UPSTREAMS = {"upstreams": {"demo": {"command": "python", "args": ["-m", "guard.demo"]}},
             "auth": {"anonymous_servers": ["demo"]}}


def test_absent_section_disables_authorization() -> None:
    settings = parse(UPSTREAMS)
    assert settings.policy == PolicySettings()
    assert not settings.policy.enabled


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("", encoding="utf-8")
    (tmp_path / "m.conf").write_text("", encoding="utf-8")
    raw = {**UPSTREAMS, "policy": {"policy": "p.csv", "model": "m.conf", "deny_as_unknown": True,
                                   "reload": False, "reload_interval": 1}}
    settings = parse(raw, source=tmp_path / "guard.toml")
    assert settings.policy.policy == tmp_path / "p.csv"
    assert settings.policy.model == tmp_path / "m.conf"
    assert settings.policy.deny_as_unknown is True
    assert settings.policy.reload is False
    assert settings.policy.reload_interval == 1.0
    assert settings.policy.enabled


def test_every_problem_is_reported(tmp_path: Path) -> None:
    raw = {**UPSTREAMS, "policy": {"model": "missing.conf", "deny_as_unknown": "yes", "reload_interval": 0,
                                   "typo": 1}}
    with pytest.raises(ConfigError) as err:
        parse(raw, source=tmp_path / "guard.toml")
    text = "\n".join(err.value.problems)
    for fragment in ("policy.policy: required", "policy.model: file not found", "policy.deny_as_unknown",
                     "policy.reload_interval", "policy.typo: unknown setting"):
        assert fragment in text


def test_missing_policy_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        parse({**UPSTREAMS, "policy": {"policy": "nope.csv"}}, source=tmp_path / "guard.toml")

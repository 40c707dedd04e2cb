"""The operators guide's configuration example is a valid configuration."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from guard.config import parse
from guard.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "docs" / "operators.md"


def test_complete_example_parses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("A complete example", 1)[1]
    toml = re.search(r"```toml\n(.*?)```", block, re.S)
    assert toml is not None
    for var in ("GUARD_METRICS_TOKEN", "REMOTE_MCP_TOKEN"):
        monkeypatch.setenv(var, "x" * 40)
    monkeypatch.setenv("GUARD_PII_KEYRING", '{"primary": "k1", "keys": {"k1": "' + "A" * 43 + '"}}')
    raw = tomllib.loads(toml.group(1))
    with pytest.raises(ConfigError) as info:  # the files it names do not exist on a test machine...
        parse(raw, source=tmp_path / "guard.toml")
    missing = ("no such file", "not found", "No such file")
    assert all(any(m in problem for m in missing) for problem in info.value.problems), info.value.problems

"""Configuration: defaults, the mcpServers shape, and collecting every error at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.cli import main
from guard.config import load, parse
from guard.errors import ConfigError


def test_mcpservers_shape_is_accepted() -> None:
    settings = parse({
        "mcpServers": {
            "files": {"command": "npx", "args": ["-y", "server"], "env": {"A": "b"}},
            "remote": {"url": "https://example.test/mcp"},
            "ws": {"url": "ws://127.0.0.1:9/mcp"},
        },
        "auth": {"anonymous_servers": ["files", "remote", "ws"]},
    })
    assert settings.upstreams["files"].transport == "stdio"
    assert settings.upstreams["remote"].transport == "streamable-http"
    assert settings.upstreams["ws"].transport == "websocket"
    assert settings.server.max_message_bytes == 1024 * 1024


def test_env_references_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_TOKEN", "abc")
    settings = parse({
        "upstreams": {"r": {"url": "https://x.test/mcp", "headers": {"Authorization": "Bearer ${UPSTREAM_TOKEN}"}}},
        "auth": {"anonymous_servers": ["r"]},
    })
    assert settings.upstreams["r"].headers["Authorization"] == "Bearer abc"


def test_every_error_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_VAR", raising=False)
    with pytest.raises(ConfigError) as info:
        parse({
            "server": {"port": "eighty", "max_message_bytes": -1, "bogus": 1},
            "upstreams": {
                "a": {"args": ["x"]},
                "b": {"url": "ftp://nope"},
                "c": {"command": "x", "headers": {"H": "${MISSING_VAR}"}},
                "bad name!": {"command": "x"},
            },
        })
    text = "\n".join(info.value.problems)
    for fragment in ("server.port", "server.max_message_bytes", "server.bogus", "upstreams.a",
                     "upstreams.b", "MISSING_VAR", "bad name!"):
        assert fragment in text
    assert len(info.value.problems) >= 7


def test_check_config_cli_lists_all_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text('[server]\nport = "x"\nlog_level = "loud"\n[upstreams.a]\nurl = "gopher://x"\n')
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "server.port" in err and "server.log_level" in err and "upstreams.a" in err


def test_check_config_reports_toml_syntax_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[server\n")
    assert main(["check-config", str(cfg)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_load_missing_file() -> None:
    with pytest.raises(ConfigError):
        load("/nonexistent/guard.toml")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "guard" in capsys.readouterr().out

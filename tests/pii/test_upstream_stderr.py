"""A stdio upstream's stderr never reaches guard's log unless the operator switches it on."""

from __future__ import annotations

import logging
import sys

import pytest

from guard.config import parse
from guard.transports.stdio import StdioUpstream

CARD = "4111 1111 1111 1111"
CHILD = f"import sys; sys.stderr.write('charging card {CARD} for alice@example.com\\n'); sys.stderr.flush()"


async def _run(log_stderr: bool) -> None:
    settings = parse({"upstreams": {"u": {"command": sys.executable, "args": ["-c", CHILD],
                                          "log_stderr": log_stderr}},
                      "auth": {"anonymous_servers": ["u"]}}).upstreams["u"]
    upstream = StdioUpstream(settings, "s1", 1 << 20)
    await upstream.start()
    await upstream.aclose()


async def test_upstream_stderr_with_pii_is_not_logged_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await _run(log_stderr=False)
    assert CARD not in caplog.text and "alice@example.com" not in caplog.text
    assert "wrote 1 stderr line(s), not logged" in caplog.text


async def test_log_stderr_switch_copies_the_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await _run(log_stderr=True)
    assert CARD in caplog.text

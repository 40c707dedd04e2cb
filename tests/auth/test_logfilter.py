"""Credential redaction for log records (defence in depth against library debug logs)."""

from __future__ import annotations

import logging

import pytest

from guard.auth.logfilter import CredentialRedactingFilter, redact_credentials

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize("text", [
    f"< GET /mcp/demo HTTP/1.1\n< Host: x\n< Authorization: Bearer {JWT}\n< Origin: y",
    f"authorization: Bearer {JWT}",
    f"Proxy-Authorization: Basic dXNlcjpwYXNz {JWT}",
    f"Cookie: session={JWT}",
    f"GET /mcp/demo?access_token={JWT}&x=1",
    f"token passed as {JWT} somewhere",
    f"headers={{'authorization': 'Bearer {JWT}'}}",
])
def test_credentials_in_library_debug_logs_are_redacted(text: str) -> None:
    out = redact_credentials(text)
    assert JWT not in out and JWT.split(".")[2] not in out


def test_basic_credentials_and_opaque_bearer_tokens_are_redacted() -> None:
    assert "dXNlcjpwYXNz" not in redact_credentials("Authorization: Basic dXNlcjpwYXNz")
    assert "opaque-123" not in redact_credentials("sent Bearer opaque-123 upstream")
    assert "s3cr3t" not in redact_credentials("GET /x?token=s3cr3t HTTP/1.1")


def test_ordinary_messages_are_untouched() -> None:
    text = "session abc: upstream demo started (pid 42), Host: guard.example.test"
    assert redact_credentials(text) == text


def test_filter_rewrites_the_record_with_arguments() -> None:
    record = logging.LogRecord("uvicorn.error", logging.DEBUG, __file__, 1, "< %s", (f"Authorization: Bearer {JWT}",),
                               None)
    assert CredentialRedactingFilter().filter(record) is True
    assert JWT not in record.getMessage() and "[redacted]" in record.getMessage()

"""``[tracing]``: off by default and then free of OpenTelemetry; on only with the SDK present."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from guard.config import parse
from guard.errors import ConfigError
from guard.tracing import NO_TRACER, build_tracer
from guard.tracing.settings import DEFAULT_ENDPOINT, TracingSettings

UPSTREAM: dict[str, Any] = {"upstreams": {"u": {"url": "http://127.0.0.1:9/mcp"}}, "auth": {"anonymous_servers": ["u"]}}


def test_tracing_is_off_without_a_section_and_on_with_one() -> None:
    assert parse(UPSTREAM).tracing == TracingSettings()
    assert build_tracer(parse(UPSTREAM).tracing) is NO_TRACER
    on = parse({**UPSTREAM, "tracing": {}}).tracing
    assert on.enabled and on.endpoint == DEFAULT_ENDPOINT and on.sample_ratio == 1.0
    assert not parse({**UPSTREAM, "tracing": {"enabled": False}}).tracing.enabled


def test_every_tracing_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse({**UPSTREAM, "tracing": {"endpoint": "grpc://collector:4317", "sample_ratio": 1.5, "service_name": " ",
                                       "max_queue_size": 0, "endpoint_typo": 1}})
    text = "\n".join(info.value.problems)
    for key in ("tracing.endpoint", "tracing.sample_ratio", "tracing.service_name", "tracing.max_queue_size",
                "tracing.endpoint_typo: unknown setting"):
        assert key in text, text


def test_collector_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTLP_TOKEN", "t0ken")
    settings = parse({**UPSTREAM, "tracing": {"headers": {"Authorization": "Bearer ${OTLP_TOKEN}"}}}).tracing
    assert settings.headers == {"Authorization": "Bearer t0ken"}


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                          check=False)


def test_guard_without_tracing_never_imports_opentelemetry() -> None:
    done = run(f"""
        import sys
        from guard.config import parse
        from guard.runtime import build_runtime
        from guard.server import build_app
        build_app(build_runtime(parse({UPSTREAM!r})))
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
        print(loaded)
        sys.exit(1 if loaded else 0)
    """)
    assert done.returncode == 0, done.stdout + done.stderr


def test_tracing_on_without_the_sdk_refuses_to_start() -> None:
    done = run(f"""
        import sys
        sys.modules["opentelemetry.sdk"] = None  # as if guard[tracing] were not installed
        from guard.config import parse
        from guard.errors import ConfigError
        from guard.runtime import build_runtime
        try:
            build_runtime(parse({{**{UPSTREAM!r}, "tracing": {{}}}}))
        except ConfigError as exc:
            print(exc)
            sys.exit(3)
    """)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "pip install 'guard[tracing]'" in done.stdout


def test_the_startup_line_never_shows_collector_credentials(caplog: pytest.LogCaptureFixture) -> None:
    from guard.tracing.otel import OtelTracer

    settings = parse({**UPSTREAM, "tracing": {"endpoint": "https://user:s3cret@collector:4318/v1/traces?k=token"}})
    with caplog.at_level("INFO", logger="guard.tracing"):
        tracer = OtelTracer(settings.tracing)
    asyncio.run(tracer.aclose())  # nothing queued: stops the exporter thread at once
    assert "https://collector:4318/v1/traces" in caplog.text
    assert "s3cret" not in caplog.text and "token" not in caplog.text

"""Prometheus metrics: series and values, bounded labels, events, and /metrics on a real guard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from websockets.asyncio.client import connect

from guard.config import parse
from guard.context import (
    Decision,
    Direction,
    Event,
    EventKind,
    Finding,
    MessageContext,
    RequestRecord,
    SessionInfo,
    Verdict,
)
from guard.jsonrpc import ErrorCode, Message
from guard.jsonrpc import parse as parse_message
from guard.metrics import Metrics, metrics_endpoint
from guard.metrics_flow import MetricsStage
from guard.pipeline import Pipeline, Stage
from guard.runtime import build_runtime
from tests.support.guard_server import free_port, free_socket, running_guard, running_runtime, serving

SCRIPT = str(Path(__file__).resolve().parent.parent / "support" / "scripted_upstream.py")
SESSION = SessionInfo(id="sess-1", server="demo", client_addr="127.0.0.1:1")


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample in the exposition as ``(name, labels) -> value``."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    return _parse(body.decode())


def _parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(data: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return data.get((name, frozenset(labels.items())))


def request_ctx(method: str, rid: int = 1, *, verdict: Verdict | None = None,
                decision: Decision | None = None) -> MessageContext:
    msg = parse_message(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": {}}))
    ctx = MessageContext(session=SESSION, direction=Direction.CLIENT_TO_SERVER, message=msg, method=method)
    if verdict is not None:
        ctx.verdict = verdict
    ctx.decision = decision
    return ctx


def response_ctx(method: str, started: float, received: float, payload: dict[str, Any]) -> MessageContext:
    msg: Message = parse_message(json.dumps({"jsonrpc": "2.0", "id": 1, **payload}))
    record = RequestRecord(id=1, method=method, target=None, direction=Direction.CLIENT_TO_SERVER, started=started)
    return MessageContext(session=SESSION, direction=Direction.SERVER_TO_CLIENT, message=msg, method=method,
                          request=record, received_at=received)


# Unit ---------------------------------------------------------------------------------------


def test_requests_are_counted_by_server_method_and_decision() -> None:
    m = Metrics()
    m.observe_message(request_ctx("tools/list"))
    m.observe_message(request_ctx("tools/call"))
    m.observe_message(request_ctx("tools/call", decision=Decision(False, "no_rule"),
                                  verdict=Verdict.reject(ErrorCode.POLICY_DENIED, "denied")))
    m.observe_message(request_ctx("tools/call", decision=Decision(True, "rule"),
                                  verdict=Verdict.reject(ErrorCode.PII_BLOCKED, "blocked")))
    data = samples(m)
    assert value(data, "guard_requests_total", server="demo", method="tools/list", decision="allow") == 1
    assert value(data, "guard_requests_total", server="demo", method="tools/call", decision="allow") == 1
    assert value(data, "guard_requests_total", server="demo", method="tools/call", decision="deny") == 1
    assert value(data, "guard_requests_total", server="demo", method="tools/call", decision="reject") == 1
    assert value(data, "guard_messages_total", server="demo", direction="client_to_server", kind="request") == 4


def test_pii_findings_stage_timings_and_upstream_latency() -> None:
    m = Metrics()
    ctx = response_ctx("tools/call", started=100.0, received=100.3, payload={"result": {"content": []}})
    ctx.findings = [Finding("EMAIL_ADDRESS", "$.content[0].text", "redact"),
                    Finding("EMAIL_ADDRESS", "$.content[1].text", "redact"),
                    Finding("US_SSN", "$.content[2].text", "encrypt")]
    ctx.timings = {"authorize": 0.0002, "pii": 0.004}
    ctx.upstream_outcome = "ok"
    m.observe_message(ctx)
    data = samples(m)
    assert value(data, "guard_pii_findings_total", server="demo", entity_type="EMAIL_ADDRESS", action="redact") == 2
    assert value(data, "guard_pii_findings_total", server="demo", entity_type="US_SSN", action="encrypt") == 1
    assert value(data, "guard_stage_duration_seconds_count", stage="pii", direction="server_to_client") == 1
    assert value(data, "guard_stage_duration_seconds_bucket", stage="pii", direction="server_to_client",
                 le="0.005") == 1
    assert value(data, "guard_stage_duration_seconds_bucket", stage="pii", direction="server_to_client",
                 le="0.0025") == 0
    latency_sum = value(data, "guard_upstream_latency_seconds_sum", server="demo", method="tools/call")
    assert latency_sum is not None and abs(latency_sum - 0.3) < 1e-9
    assert value(data, "guard_upstream_latency_seconds_bucket", server="demo", method="tools/call", le="0.25") == 0
    assert value(data, "guard_upstream_latency_seconds_bucket", server="demo", method="tools/call", le="0.5") == 1
    assert value(data, "guard_responses_total", server="demo", method="tools/call", outcome="ok") == 1


def test_response_outcomes_drop_error_codes_from_labels() -> None:
    m = Metrics()
    for code in range(-32000, -31990):
        ctx = response_ctx("tools/call", 0.0, 0.1, {"error": {"code": code, "message": "x"}})
        ctx.upstream_outcome = f"error:{code}"
        m.observe_message(ctx)
    assert value(samples(m), "guard_responses_total", server="demo", method="tools/call", outcome="error") == 10


def test_invented_method_names_cannot_grow_the_registry() -> None:
    """Attack: a client sends 5,000 distinct made-up methods to blow up label cardinality."""
    m = Metrics(max_label_values=50)
    for i in range(5000):
        m.observe_message(request_ctx(f"evil/method-{i}", rid=i))
        m.observe_message(request_ctx(f"tasks/evil-{i}", rid=i))
    data = samples(m)
    methods = {dict(labels)["method"] for name, labels in data if name == "guard_requests_total"}
    assert methods <= {f"tasks/evil-{i}" for i in range(50)} | {"other"}
    assert len(methods) <= 51
    assert value(data, "guard_requests_total", server="demo", method="other", decision="allow") == 5000 + 4950


def test_label_values_with_odd_characters_are_folded() -> None:
    m = Metrics()
    m.auth_failure("demo", 'bad"reason\nwith newline')
    m.upstream_error("demo", "x" * 500)
    data = samples(m)
    assert value(data, "guard_auth_failures_total", server="demo", reason="other") == 1
    assert value(data, "guard_upstream_errors_total", server="demo", kind="other") == 1


def test_breaker_state_is_one_hot_and_policy_status_is_tracked() -> None:
    m = Metrics()
    m.breaker_state("demo", "open")
    m.breaker_state("demo", "half_open")
    m.policy_status(True, 1_700_000_000.0)
    m.policy_status(False, 1_700_000_100.0)
    data = samples(m)
    assert value(data, "guard_circuit_breaker_state", server="demo", state="half_open") == 1
    assert value(data, "guard_circuit_breaker_state", server="demo", state="open") == 0
    assert value(data, "guard_circuit_breaker_state", server="demo", state="closed") == 0
    assert value(data, "guard_policy_reload_success") == 0
    assert value(data, "guard_policy_last_success_timestamp_seconds") == 1_700_000_000.0
    assert value(data, "guard_policy_reloads_total", result="ok") == 1
    assert value(data, "guard_policy_reloads_total", result="error") == 1


async def test_stage_counts_events_and_never_goes_negative() -> None:
    m = Metrics()
    stage = MetricsStage(m)
    assert isinstance(stage, Stage)
    await stage.on_event(Event(EventKind.CONNECT, server="demo", session=SESSION))
    await stage.on_event(Event(EventKind.CLOSE, server="demo", session=SESSION, code=1000))
    other = SessionInfo(id="never-opened", server="demo", client_addr="x")
    await stage.on_event(Event(EventKind.CLOSE, server="demo", session=other, code=1013))  # upstream down
    await stage.on_event(Event(EventKind.AUTH_FAILURE, server="demo", code=401, reason="missing_token"))
    await stage.on_event(Event(EventKind.POLICY_RELOAD, details={"ok": True}, at=1234.0))
    verdict = await stage.process(request_ctx("ping"))
    assert not verdict.rejected and verdict.message is None
    data = samples(m)
    assert value(data, "guard_connections_active", server="demo") == 0
    assert value(data, "guard_connections_total", server="demo") == 1
    assert value(data, "guard_connections_closed_total", server="demo", code="1013") == 1
    assert value(data, "guard_auth_failures_total", server="demo", reason="missing_token") == 1
    assert value(data, "guard_policy_last_success_timestamp_seconds") == 1234.0
    assert value(data, "guard_requests_total", server="demo", method="ping", decision="allow") == 1


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.connection_opened("demo")
    assert value(samples(a), "guard_connections_total", server="demo") == 1
    assert value(samples(b), "guard_connections_total", server="demo") is None
    assert value(samples(b), "guard_info", version=__import__("guard").__version__) == 1


# Over real sockets --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_app(app: Starlette) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="off"))
    async with serving(server, free_socket()) as port:
        yield f"http://127.0.0.1:{port}"


async def test_metrics_endpoint_requires_the_scrape_token_when_set() -> None:
    m = Metrics()
    app = Starlette(routes=[metrics_endpoint(m, token="s3cret")])
    async with serve_app(app) as base, httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/metrics")).status_code == 401
        wrong = await client.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cre"})
        assert wrong.status_code == 401
        ok = await client.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
        assert b"guard_info" in ok.content
        assert (await client.post(f"{base}/metrics")).status_code == 405


async def test_metrics_after_real_traffic_through_guard() -> None:
    settings = parse({
        "upstreams": {"s": {"command": sys.executable, "args": [SCRIPT], "terminate_grace": 1.0}},
        "auth": {"anonymous_servers": ["s"]},
    })
    runtime = build_runtime(settings)
    metrics = Metrics()
    metrics.declare_servers(settings.upstreams)
    runtime.pipeline = Pipeline([*runtime.pipeline.stages, MetricsStage(metrics)])
    runtime.routes.append(metrics_endpoint(metrics))
    async with running_runtime(runtime) as base, httpx.AsyncClient() as http:
        scrape_url = base.replace("ws://", "http://") + "/metrics"
        async with connect(f"{base}/mcp/s", subprotocols=["mcp"]) as ws:  # type: ignore[list-item]
            for rid, method in enumerate(["tools/list", "tools/list", "prompts/list"], start=1):
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["id"] == rid
            during = _parse((await http.get(scrape_url)).text)
        assert value(during, "guard_connections_active", server="s") == 1
        assert value(during, "guard_requests_total", server="s", method="tools/list", decision="allow") == 2
        assert value(during, "guard_requests_total", server="s", method="prompts/list", decision="allow") == 1
        assert value(during, "guard_upstream_latency_seconds_count", server="s", method="tools/list") == 2
        assert value(during, "guard_circuit_breaker_state", server="s", state="closed") == 1
        after: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for _ in range(200):
            after = _parse((await http.get(scrape_url)).text)
            if value(after, "guard_connections_active", server="s") == 0:
                break
            await asyncio.sleep(0.02)
        assert value(after, "guard_connections_active", server="s") == 0
        assert value(after, "guard_connections_total", server="s") == 1
        assert value(after, "guard_connections_closed_total", server="s", code="1000") == 1


async def test_metrics_token_from_config_protects_the_endpoint() -> None:
    import httpx

    from tests.core.test_relay_bad_input import scripted

    async with running_guard(scripted(metrics_token="scrape-me")) as base:
        http = base.replace("ws://", "http://")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{http}/metrics")).status_code == 401
            ok = await client.get(f"{http}/metrics", headers={"Authorization": "Bearer scrape-me"})
            assert ok.status_code == 200 and "guard_connections_active" in ok.text


async def test_readyz_judges_the_replica_and_one_dead_upstream_does_not_empty_the_pool(tmp_path: Path) -> None:
    """``/readyz`` is the replica's own checks; an upstream's health is ``/readyz?upstream=NAME`` (issue 17)."""
    import httpx

    from guard import devkeys
    from tests.core.test_relay_bad_input import scripted

    devkeys.generate_audit_key(tmp_path / "keys")
    cfg = scripted()
    cfg["audit"] = {"signing_key": str(tmp_path / "keys" / devkeys.AUDIT_PRIVATE_KEY),
                    "path": str(tmp_path / "audit" / "a.jsonl")}
    cfg["upstreams"]["down"] = {"url": f"ws://127.0.0.1:{free_port()}/mcp"}
    cfg["auth"]["anonymous_servers"].append("down")
    async with running_guard(cfg) as base, httpx.AsyncClient() as client:
        http = base.replace("ws://", "http://")
        ready = await client.get(http + "/readyz")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["audit"]["ok"] and not any(name.startswith("upstream") for name in checks)
        up = await client.get(http + "/readyz", params={"upstream": "s"})
        assert up.status_code == 200 and up.json()["checks"]["reachable"]["ok"]
        down = await client.get(http + "/readyz", params={"upstream": "down"})
        assert down.status_code == 503 and not down.json()["checks"]["reachable"]["ok"]
        assert down.json()["checks"]["breaker"] == {"ok": True, "detail": "closed"}
        assert (await client.get(http + "/readyz", params={"upstream": "nope"})).status_code == 404
        scrape = _parse((await client.get(http + "/metrics")).text)
        assert value(scrape, "guard_upstream_reachable", server="down") == 0
        assert value(scrape, "guard_upstream_reachable", server="s") == 1

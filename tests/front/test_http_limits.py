"""Limits, metrics and wire hygiene over the Streamable HTTP front door, over real sockets.

The front door is another transport feeding the same relay and pipeline as the WebSocket
endpoint (issue 14), so the per-principal rate limit, the per-principal session cap, the
metrics and the parser's refusal of values it cannot forward (issue 12 item 7) must hold on
it exactly as they do on WebSocket. The upstream is the scripted stdio server, which records
every line it receives: each refusal is also shown never to have reached it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.front.helpers import (
    client,
    legacy_init,
    modern_headers,
    modern_request,
    open_session,
    post_headers,
    scripted_config,
)
from tests.hardening.test_metrics import _parse, value
from tests.support.guard_server import running_guard

PATH = "/mcp/s"
SCRAPE = {"Authorization": "Bearer scrape"}


def received(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


async def test_http_client_cannot_outrun_its_rate_limit_and_metrics_count_the_refusals(tmp_path: Path) -> None:
    record = tmp_path / "rec.jsonl"
    config = scripted_config(record, rate_limit=0.01, rate_burst=3, metrics_token="scrape")
    async with running_guard(config) as base, client(base) as c:
        session = await open_session(c, PATH)  # initialize takes one token of the bucket
        codes = []
        for rid in range(10, 18):
            r = await c.post(PATH, json={"jsonrpc": "2.0", "id": rid, "method": "tools/list"},
                             headers=post_headers(session))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["id"] == rid
            codes.append(body["error"]["code"] if "error" in body else 0)
        scraped = _parse((await c.get("/metrics", headers=SCRAPE)).text)
    allowed = codes.count(0)
    assert 1 <= allowed <= 3 and codes.count(-31006) == len(codes) - allowed, codes
    assert codes == sorted(codes, reverse=True)  # the bucket empties, then every call is refused
    forwarded = [m for m in received(record) if m.get("method") == "tools/list"]
    assert len(forwarded) == allowed  # a refused call never reaches the upstream
    assert value(scraped, "guard_requests_total", server="s", method="tools/list", decision="allow") == allowed


async def test_http_sessions_count_against_the_per_principal_session_cap(tmp_path: Path) -> None:
    config = scripted_config(tmp_path / "rec.jsonl", max_connections_per_principal=2, metrics_token="scrape")
    async with running_guard(config) as base, client(base) as c:
        first = await open_session(c, PATH)
        await open_session(c, PATH)
        refused = await c.post(PATH, json=legacy_init(), headers=post_headers())
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["data"]["reason"] == "too_many_connections_for_principal"
        scraped = _parse((await c.get("/metrics", headers=SCRAPE)).text)
        assert value(scraped, "guard_connections_active", server="s") == 2
        ended = await c.delete(PATH, headers={"Mcp-Session-Id": first, "MCP-Protocol-Version": "2025-11-25"})
        assert ended.status_code in (200, 202, 204), ended.text
        again = None
        for _ in range(100):  # the DELETE returns once the session ended; its slot is released right after
            again = await c.post(PATH, json=legacy_init(), headers=post_headers())
            if again.status_code != 429:
                break
        assert again is not None and again.status_code == 200, again.text


async def test_lone_surrogate_over_http_is_answered_and_never_forwarded(tmp_path: Path) -> None:
    """Issue 12 item 7 on the HTTP front door: ``"x\\ud800"`` cannot be forwarded as UTF-8."""
    record = tmp_path / "rec.jsonl"
    raw = b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"x":"x\\ud800"}}}'
    async with running_guard(scripted_config(record)) as base, client(base) as c:
        session = await open_session(c, PATH)
        r = await c.post(PATH, content=raw, headers=post_headers(session))
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] in (-32700, -32600)
        ok = await c.post(PATH, json={"jsonrpc": "2.0", "id": 10, "method": "ping"}, headers=post_headers(session))
        assert ok.status_code == 200 and ok.json()["id"] == 10 and "result" in ok.json()  # the session goes on
        modern = await c.post(PATH, content=raw.replace(b'"params":{', b'"params":{"_meta":{'
                                                        b'"io.modelcontextprotocol/protocolVersion":"2026-07-28"},'),
                              headers=modern_headers("tools/call", "echo"))
        assert modern.status_code == 400, modern.text
    assert all("\ud800" not in json.dumps(m) and m.get("id") != 9 for m in received(record))


async def test_mcp_param_header_that_lies_about_an_argument_is_refused_end_to_end(tmp_path: Path) -> None:
    """The upstream annotates ``account`` with ``x-mcp-header``: a client must mirror it truthfully
    (a load balancer or the upstream routing on the header would otherwise act on another account)."""
    record = tmp_path / "rec.jsonl"
    config = scripted_config(record)
    schema = {"type": "object", "properties": {"account": {"type": "string", "x-mcp-header": "Account"}}}
    config["upstreams"]["s"]["env"]["TOOLS"] = json.dumps([{"name": "transfer", "inputSchema": schema}])
    body = modern_request("tools/call", {"name": "transfer", "arguments": {"account": "A-1"}}, 4)
    async with running_guard(config) as base, client(base) as c:
        listed = await c.post(PATH, json=modern_request("tools/list", {}, 3), headers=modern_headers("tools/list"))
        assert listed.json()["result"]["tools"][0]["name"] == "transfer", listed.text
        missing = await c.post(PATH, json=body, headers=modern_headers("tools/call", "transfer"))
        assert missing.status_code == 400 and "is required" in missing.json()["error"]["message"], missing.text
        lying = await c.post(PATH, json=body, headers=modern_headers("tools/call", "transfer",
                                                                      **{"Mcp-Param-Account": "A-2"}))
        assert lying.status_code == 400, lying.text
        assert lying.json()["error"]["code"] == -32020 and "Mcp-Param-Account" in lying.json()["error"]["message"]
        truthful = await c.post(PATH, json=body, headers=modern_headers("tools/call", "transfer",
                                                                         **{"Mcp-Param-Account": "A-1"}))
        assert truthful.status_code == 200, truthful.text
    forwarded = [m for m in received(record) if m.get("method") == "tools/call"]
    assert [m["params"]["arguments"] for m in forwarded] == [{"account": "A-1"}]

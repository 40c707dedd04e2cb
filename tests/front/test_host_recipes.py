"""The host recipes of docs/clients.md, run or checked against a running guard with every stage on.

* OpenAI Agents SDK and Python SDK 2.x: the documented snippet runs as is (only the demo's port
  and token path differ), with no OpenAI API key.
* Claude Desktop: the documented ``mcpServers`` entry's command and args, launched by the official
  SDK stdio client exactly as the host launches them.
* Cursor and VS Code (no CLI to run): their JSON is valid and has the fields those hosts document
  (``url`` + ``headers``; ``type: "http"`` + ``url`` + ``headers`` with an ``inputs`` prompt), and
  the request they describe is accepted by guard.
* Claude Code: tests/front/test_readme_commands.py runs the README's ``claude mcp add`` with the real CLI
  and ``claude mcp list`` / ``get`` report the server connected.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters

from tests.e2e.test_full_stack import stack
from tests.front.helpers import ROOT, http, legacy_init, post_headers
from tests.support.guard_server import running_runtime

pytestmark = pytest.mark.e2e
DOC = (ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
DEMO_URL = "http://127.0.0.1:8787/mcp/demo"


def block(heading: str, language: str) -> str:
    section = DOC.split(heading, 1)[1]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found is not None, heading
    return found.group(1)


async def run_python(code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=cwd, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
async def demo(tmp_path: Path) -> Any:
    runtime, _ = stack(tmp_path, tmp_path / "record.jsonl")  # also writes dev/tokens/<user>.token
    async with running_runtime(runtime) as base:
        yield http(base) + "/mcp/demo", tmp_path


@pytest.mark.parametrize("heading", ["### OpenAI Agents SDK", "## SDK clients"])
async def test_documented_python_recipe_runs_against_guard(demo: tuple[str, Path], heading: str) -> None:
    url, tmp = demo
    code = block(heading, "python").replace(DEMO_URL, url)
    out = await run_python(code, tmp)  # tmp holds dev/tokens/alice.token, as after guard demo
    assert "'find_customer'" in out and "'delete_customer'" not in out  # alice's view, filtered by policy
    if heading == "### OpenAI Agents SDK":
        assert "<pii:EMAIL_ADDRESS:" in out and "alice.johnson@example.com" not in out


async def test_claude_desktop_entry_launches_guard_connect(demo: tuple[str, Path]) -> None:
    url, tmp = demo
    entry = json.loads(block("### Claude Desktop", "json"))["mcpServers"]["guard-demo"]
    assert entry["command"].endswith("/.venv/bin/guard") and entry["args"][:2] == ["connect", DEMO_URL]
    token_file = entry["args"][entry["args"].index("--token-file") + 1]
    assert token_file.endswith("/dev/tokens/alice.token")
    command = str(Path(sys.executable).with_name("guard"))
    args = ["connect", url, "--token-file", str(tmp / "dev/tokens/alice.token")]
    async with Client(StdioServerParameters(command=command, args=args), mode="legacy") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
    assert "find_customer" in tools and "delete_customer" not in tools


async def test_cursor_and_vscode_configs_describe_requests_guard_accepts(demo: tuple[str, Path]) -> None:
    url, tmp = demo
    cursor = json.loads(block("### Cursor", "json"))["mcpServers"]["guard-demo"]
    vscode = json.loads(block("### VS Code", "json"))
    server = vscode["servers"]["guard-demo"]
    assert cursor["url"] == DEMO_URL and cursor["headers"]["Authorization"] == "Bearer ${env:GUARD_TOKEN}"
    assert server["type"] == "http" and server["url"] == DEMO_URL
    assert server["headers"]["Authorization"] == "Bearer ${input:guard-token}"
    assert vscode["inputs"][0] == {"type": "promptString", "id": "guard-token", "description": "guard bearer token",
                                   "password": True}
    token = (tmp / "dev/tokens/alice.token").read_text().strip()
    async with httpx.AsyncClient(timeout=30) as c:
        for template in (cursor["headers"]["Authorization"], server["headers"]["Authorization"]):
            value = template.replace("${env:GUARD_TOKEN}", token).replace("${input:guard-token}", token)
            r = await c.post(url, json=legacy_init(), headers={**post_headers(), "Authorization": value})
            assert r.status_code == 200 and r.headers.get("mcp-session-id")

"""The README's commands, run as a new user pastes them (from a clone, without activating the venv).

Each ```bash block of the README is read and run in a scratch directory laid out like a clone
(``.venv`` is this checkout's). Two things differ from a paste, both to keep tests independent:
the demo's port (8787 in the README) becomes a free port, and the setup line's venv creation and
``pip install`` are not repeated (CI's own setup, ``.ci/run``, runs the same install first; this
test checks they agree). ``bash .ci/run`` is CI itself. The ``claude mcp add`` command runs with
the real Claude Code CLI (``@anthropic-ai/claude-code`` from npm, installed by ``.ci/run`` beside the
TypeScript SDK; its configuration goes to a scratch ``HOME``), and ``claude mcp list`` / ``get``
must report the server connected through guard: no account is needed for that.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.front.helpers import ROOT
from tests.support.guard_server import free_port

README = ROOT / "README.md"
NODE_BIN = ROOT / "tests" / "e2e" / "node" / "node_modules" / ".bin"
"""``claude`` (Claude Code) and the other Node tools ``.ci/run`` installs."""


def bash_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    commands: list[str] = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line:
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def test_every_readme_command_avoids_an_unactivated_venv() -> None:
    for command in bash_commands():
        words = shlex.split(command.replace("$(", "").replace(")", ""))
        for word in words:
            assert word not in ("guard", "pip", "python"), f"{command!r}: use .venv/bin/{word}"


def test_setup_line_installs_what_ci_installs() -> None:
    setup = next(c for c in bash_commands() if "pip install" in c)
    assert setup == 'python3 -m venv .venv && .venv/bin/pip install -e ".[demo]" && .venv/bin/guard demo'
    ci = (ROOT / ".ci/run").read_text()
    assert "python3 -m venv .venv" in ci and '.venv/bin/pip install -q -e ".[dev' in ci
    assert '"mcp>=2.3,<3"' in (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]


async def test_readme_demo_tour_and_host_commands_work_as_pasted(tmp_path: Path) -> None:
    commands = bash_commands()
    port = free_port()
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PYTHONUNBUFFERED"] = "1"
    demo = next(c for c in commands if "pip install" in c).split(" && ")[-1]
    assert demo == ".venv/bin/guard demo"
    proc = await asyncio.create_subprocess_shell(f"{demo} --port {port}", cwd=tmp_path, env=env,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                 start_new_session=True)
    try:
        assert proc.stdout is not None
        seen = b""
        async with asyncio.timeout(120):
            while b"Stop with Ctrl-C" not in seen:
                line = await proc.stdout.readline()
                assert line, seen
                seen += line
        url = f"http://127.0.0.1:{port}/mcp/demo"
        tour = next(c for c in commands if c.endswith("demo tour"))
        done = await asyncio.to_thread(subprocess.run, f"{tour} --url {url}", shell=True, cwd=tmp_path, env=env,
                                       capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "DENIED" in done.stdout and "<pii:EMAIL_ADDRESS:" in done.stdout and "REVEALED" in done.stdout
        claude = next(c for c in commands if c.startswith("claude mcp add"))
        words = shlex.split(claude.replace("8787", str(port)))
        assert words[:5] == ["claude", "mcp", "add", "--transport", "http"] and words[6] == url
        cli_env = {**env, "HOME": str(tmp_path / "home"), "PATH": f"{NODE_BIN}:{env['PATH']}",
                   "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                   "DISABLE_AUTOUPDATER": "1"}
        (tmp_path / "home").mkdir()

        async def claude_code(command: str) -> str:
            done = await asyncio.to_thread(subprocess.run, command, shell=True, cwd=tmp_path, env=cli_env,
                                           capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            return done.stdout

        await claude_code(claude.replace("8787", str(port)))  # the README's command, as pasted
        listed = await claude_code("claude mcp list")  # connects through guard with alice's token
        assert f"guard-demo: {url} (HTTP)" in listed and "Connected" in listed, listed
        shown = await claude_code("claude mcp get guard-demo")
        assert "Connected" in shown and url in shown, shown
        assert (tmp_path / "dev/policies/policy.csv").exists()  # the file the README says to edit
    finally:
        os.killpg(proc.pid, 15)
        await asyncio.wait_for(proc.wait(), 30)

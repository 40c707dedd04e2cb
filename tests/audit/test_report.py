"""guard audit report: self-contained HTML that renders in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import struct
from pathlib import Path

import pytest

from guard.audit import report
from guard.audit.report_sections import anchor, fingerprint
from guard.pipeline.audit import AuditStage
from tests.audit.helpers import KEY, START, Clock, call_ctx, ids, make_log, read_lines, sample_log, write_lines

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def render(directory: Path, **kwargs: object) -> str:
    return report.render([directory], keys=[KEY.public], now=START + 86400, **kwargs)  # type: ignore[arg-type]


async def test_report_is_self_contained_and_has_every_section(tmp_path: Path) -> None:
    await sample_log(tmp_path)
    page = render(tmp_path)
    for heading in ("Integrity", "Requests and denials over time", "Top subjects", "Top tools and resources",
                    "PII findings by entity type and action", "Top denial reasons"):
        assert heading in page
    assert "INTACT" in page and "<svg" in page and "EMAIL_ADDRESS" in page and "export_all" in page
    assert "<script" not in page.lower()
    assert not re.search(r"""src\s*=|href\s*=\s*"(?!#)""", page, re.I)  # in-page anchors only
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert urls <= {"http://www.w3.org/2000/svg"}  # an XML namespace name, never fetched
    assert "default-src 'none'" in page


async def test_report_escapes_names_from_records(tmp_path: Path) -> None:
    """A tool named like markup must not become markup in the report (stored XSS via audit data)."""
    clock = Clock()
    stage = AuditStage(make_log(tmp_path, clock), now=clock, new_id=ids())
    await stage.process(call_ctx("<script>alert(1)</script>", allowed=False, subject='"><img src=x>'))
    await stage.aclose()
    page = render(tmp_path)
    assert "<script>alert" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;" in page


async def test_report_shows_tampering(tmp_path: Path) -> None:
    await sample_log(tmp_path, hours=1)
    path = tmp_path / "audit.jsonl"
    lines = read_lines(path)
    edited = [i for i, line in enumerate(lines) if b'"name":"alice"' in line][1]
    lines[edited] = lines[edited].replace(b'"alice"', b'"mallory"')
    write_lines(path, lines)
    page = render(tmp_path)
    assert "TAMPERED" in page and "First bad record" in page


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_report_answers_who_did_what_denials_and_policy_history(tmp_path: Path) -> None:
    await sample_log(tmp_path, hours=1, policy_changes=True)
    page = render(tmp_path)
    denials = page[page.index('id="denials"'):page.index('id="subjects"')]
    assert "export_all" in denials and "policy_deny" in denials and "token_expired" in denials
    assert denials.count("<tr>") == 1 + 3 + 1  # header, 3 policy denials, 1 auth failure in 1 h
    assert f'id="{anchor("subject", "bob")}"' in page and f'href="#{anchor("subject", "bob")}"' in page
    assert f'id="{anchor("server", "crm")}"' in page
    history = page[page.index('id="policy-history"'):]
    assert "sha256:aaaaaaaaaaaaaaaa… &rarr; sha256:bbbbbbbbbbbbbbbb…" in history
    assert "rejected, previous policy kept: policy.csv line 4: unknown effect" in history
    assert "What this status proves." in page and "What it does not prove." in page
    assert fingerprint(KEY.public) in page and KEY.public.key_id in page
    only_bob = render(tmp_path, subject="bob")
    bob_denials = only_bob[only_bob.index('id="denials"'):only_bob.index('id="subjects"')]
    assert ">bob<" in bob_denials and ">carol<" not in bob_denials


async def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI: apt-get install -y chromium")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    await sample_log(tmp_path / "log", hours=12, policy_changes=True)
    out = tmp_path / "report.html"
    out.write_text(render(tmp_path / "log", title="guard audit report (test)"), encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "audit-report.png"
    shot.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
        "--hide-scrollbars", out.as_uri(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    assert _png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 30_000  # charts and text, not a blank page

"""``guard policy check | test | explain`` through the real command-line entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from guard.cli import main
from tests.policy.conftest import POLICIES, REPO


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_shipped_example_cases_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "test", str(POLICIES / "policy_tests.toml"), "-v")
    assert code == 0, out
    assert "FAIL" not in out
    assert re.search(r"PASS: (\d+)/\1$", out.strip())


def test_shipped_example_cases_pass_as_a_subprocess() -> None:
    """The exact command the README gives, in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-m", "guard.cli", "policy", "test", "policies/policy_tests.toml"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0 and "No module named guard.cli.__main__" in proc.stderr:
        proc = subprocess.run([sys.executable, "-c", "import sys; from guard.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", "policy", "test", "policies/policy_tests.toml"],
                              cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"PASS: (\d+)/\1\b", proc.stdout)


def test_mismatch_exits_non_zero_with_a_readable_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(f"""
policy = "{(POLICIES / 'policy.csv').as_posix()}"

[[case]]
name = "admin may delete C001 (wrong on purpose)"
subject = "root"
roles = ["admin"]
server = "demo"
method = "tools/call"
target = "delete_customer"
arguments = {{ customer_id = "C001" }}
expect = "allow"

[[case]]
name = "analyst may find"
subject = "alice"
roles = ["analyst"]
server = "demo"
method = "tools/call"
target = "find_customer"
expect = "allow"
rule = "p, role:analyst, demo, tools/call, find_*, allow"
""", encoding="utf-8")
    code, out, _ = run(capsys, "policy", "test", str(cases))
    assert code == 1
    assert "FAIL  admin may delete C001 (wrong on purpose)" in out
    assert "expected allow, got deny" in out
    assert ("decided:  deny (explicit_deny) by p, *, demo, tools/call, delete_customer, deny, "
            "customer_id ~== C001") in out
    assert "expected rule 'p, role:analyst, demo, tools/call, find_*, allow', got " \
           "'p, role:analyst, demo, tools/call, find_customer, allow'" in out
    assert "PASS: 0/2" in out and "FAIL: 2/2" in out


def test_malformed_cases_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text('[[case]]\nname = "x"\nexpect = "maybe"\ntypo = 1\n', encoding="utf-8")
    code, _, err = run(capsys, "policy", "test", str(cases))
    assert code == 2
    assert "expect must be" in err and "unknown key 'typo'" in err and "server is required" in err


def test_check_clean_policy(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "check", "--policy", str(POLICIES / "policy.csv"),
                       "--model", str(POLICIES / "model.conf"))
    assert code == 0
    assert "0 errors, 0 warnings" in out


def test_check_reports_errors_and_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.csv"
    policy.write_text(
        "p, role:a, demo, tools/call, find_*, allow\n"
        "p, role:a, demo, tools/call, find_customer, allow\n"   # shadowed by line 1
        "p, *, demo, tools/call, wipe, deny\n"
        "p, role:a, demo, tools/call, wipe, allow\n"            # unreachable
        "p, role:a, demo, tool/call, x, allow\n"                # unknown action
        "p, role:a, demo, tools/call, read_file*, allow\n"      # unanchored-looking
        "p, role:a, demo, tools/call, find.*, allow\n"          # regex-looking
        "g, role:lonely, role:nothing\n"                        # roles without rules
        "p, role:b, other, tools/call, x, allow\n",             # unknown server (with --config)
        encoding="utf-8")
    code, out, _ = run(capsys, "policy", "check", "--policy", str(policy))
    assert code == 0, out
    for fragment in (":2: warning: shadowed: ", ":4: warning: unreachable: ",
                     ":5: warning: unknown action 'tool/call'", ":6: warning: target 'read_file*' also matches",
                     ":7: warning: target 'find.*' looks like a regular", "role:lonely has no rules",
                     "role:nothing has no rules"):
        assert fragment in out
    code, _, _ = run(capsys, "policy", "check", "--policy", str(policy), "--strict")
    assert code == 1
    code, out, _ = run(capsys, "policy", "check", "--policy", str(policy), "--roles", "a")
    assert "role:b is never granted" in out

    config = tmp_path / "guard.toml"
    config.write_text('[upstreams.demo]\ncommand = "python"\n[auth]\nanonymous_servers = ["demo"]\n'
                      '[policy]\npolicy = "policy.csv"\n', encoding="utf-8")
    code, out, _ = run(capsys, "policy", "check", "--config", str(config))
    assert "server 'other' matches no configured upstream (demo)" in out

    policy.write_text("p, analyst, demo, tools/call, x, allow\n", encoding="utf-8")
    code, out, _ = run(capsys, "policy", "check", "--policy", str(policy))
    assert code == 1 and ":1: error: subject 'analyst'" in out

    model = tmp_path / "model.conf"
    model.write_text((POLICIES / "model.conf").read_text().replace("&& !some(where (p.eft == deny))", ""))
    policy.write_text("p, role:a, demo, tools/call, x, allow\n", encoding="utf-8")
    code, out, _ = run(capsys, "policy", "check", "--policy", str(policy), "--model", str(model))
    assert code == 1 and "error: [policy_effect] must be" in out


def test_explain_shows_decision_rules_and_casbin(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "explain", "--policy", str(POLICIES / "policy.csv"), "--sub", "root",
                       "--role", "admin", "--server", "demo", "--method", "tools/call", "--target",
                       "delete_customer", "--args", '{"customer_id": "C001"}')
    assert code == 0
    assert "decision:  DENY (explicit_deny)" in out
    assert "p, *, demo, tools/call, delete_customer, deny, customer_id ~== C001" in out
    assert "allow  policy.csv:" in out and "p, role:admin, demo, *, *, allow" in out
    assert "holds:     *, role:admin, role:analyst, role:support, user:root" in out
    assert "casbin:    deny (reference enforcer agrees)" in out


def test_explain_unmet_condition_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "explain", "--policy", str(POLICIES / "policy.csv"), "--sub", "bob",
                       "--role", "support", "--server", "demo", "--method", "tools/call", "--target",
                       "send_message", "--args", '{"to": "x@evil.test"}', "--json")
    assert code == 0
    data = json.loads(out)
    assert data["allowed"] is False and data["reason"] == "default_deny" and data["casbin"] is False
    assert data["unmet"][0]["failed"] == ["to glob *@example.com"]


def test_explain_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "explain", "--policy", str(POLICIES / "policy.csv"), "--sub",
                       "x\x1b[2J", "--server", "demo", "--method", "tools/call", "--target", "a\nb")
    assert code == 0
    assert "\x1b" not in out and "invalid_target" in out


def test_explain_bad_args_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "policy", "explain", "--policy", str(POLICIES / "policy.csv"), "--anonymous",
                       "--server", "demo", "--method", "ping", "--args", "{not json")
    assert code == 2 and "--args is not JSON" in err


def test_check_warns_about_exact_text_in_deny_conditions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``deny, id == C001`` lets ``" c001"`` through a server that normalizes: check says so."""
    policy = tmp_path / "policy.csv"
    policy.write_text(
        "p, role:a, demo, tools/call, *, allow\n"
        "p, *, demo, tools/call, delete, deny, id == C001\n"            # exact text in a deny: warn
        "p, *, demo, tools/call, send, deny, to glob *@evil.example\n"  # exact glob in a deny: warn
        "p, *, demo, tools/call, wipe, deny, id in a|b\n"               # exact in: warn
        "p, *, demo, tools/call, drop, deny, id ~== C001\n"             # normalized: fine
        "p, *, demo, tools/call, big, deny, limit > 1000\n"             # numbers: fine
        "p, *, demo, tools/call, other, deny, id != C001\n"             # != denies the variants: fine
        "p, role:a, demo, tools/call, copy, allow, paths[*] under /srv\n"  # legacy [*]: warn
        "p, role:a, demo, tools/call, mail, allow, to ~glob *@example.com\n",  # normalized in an allow: warn
        encoding="utf-8")
    code, out, _ = run(capsys, "policy", "check", "--policy", str(policy))
    assert code == 0, out
    assert ":2: warning: deny condition 'id == C001' compares exact text" in out and "use ~==" in out
    assert ":3: warning: deny condition 'to glob *@evil.example' compares exact text" in out
    assert ":4: warning: deny condition 'id in a|b' compares exact text" in out
    for line in (5, 6, 7):
        assert f":{line}: warning" not in out
    assert ":8: warning: [*] is the legacy spelling of [all]" in out
    assert ":9: warning: allow condition 'to ~glob *@example.com' compares normalized text" in out


def test_model_with_the_two_argument_args_match_is_refused_with_a_pointer(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.conf"
    model.write_text((POLICIES / "model.conf").read_text().replace("argsMatch(r.args, p.cond, p.eft)",
                                                                    "argsMatch(r.args, p.cond)"))
    code, out, _ = run(capsys, "policy", "check", "--policy", str(POLICIES / "policy.csv"), "--model", str(model))
    assert code == 1
    assert "use argsMatch(r.args, p.cond, p.eft)" in out

"""``guard policy check | test | explain``: tooling for policy authors.

* ``check``   -- load the model and policy, report errors and likely mistakes (exit 1 on errors,
  and on warnings with ``--strict``);
* ``test``    -- run a TOML table of requests and expected decisions (exit 1 on any mismatch);
* ``explain`` -- show the decision for one request, the rule that produced it, every matching
  rule, the rules whose argument condition failed, and the Casbin reference enforcer's verdict.

Paths: ``--policy``/``--model`` name the files; ``--config guard.toml`` takes them (and the
upstream names) from ``[policy]``. Without ``--model`` the built-in model is used, as at runtime.
Exit code 2 means the inputs could not be read or parsed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from guard.context import ANONYMOUS, Principal
from guard.errors import ConfigError
from guard.policy.engine import ANY_ARGUMENTS, Evaluation, Snapshot, subject_names
from guard.policy.rules import Rule

DEFAULT_POLICY = Path("policies/policy.csv")


def register(subparsers: Any) -> None:
    """Add ``policy`` and its sub-commands to the top-level CLI's subparsers."""
    policy = subparsers.add_parser("policy", help="check, test and explain authorization policies")
    sub = policy.add_subparsers(dest="policy_command", metavar="{check,test,explain}")
    sub.required = True

    check = sub.add_parser("check", help="report errors and likely mistakes in a policy")
    _file_options(check)
    check.add_argument("--roles", help="comma-separated roles your identity provider issues "
                                       "(enables the 'never granted' check)")
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    check.set_defaults(func=cmd_check)

    test = sub.add_parser("test", help="run a table of requests and expected decisions")
    test.add_argument("cases", type=Path, help="TOML cases file (see policies/policy_tests.toml)")
    test.add_argument("--policy", type=Path, help="policy CSV (default: the cases file's 'policy')")
    test.add_argument("--model", type=Path, help="model conf (default: the cases file's 'model' or built-in)")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.set_defaults(func=cmd_test)

    explain = sub.add_parser("explain", help="show the decision for one request and why")
    _file_options(explain)
    who = explain.add_mutually_exclusive_group(required=True)
    who.add_argument("--sub", help="the principal's subject (token 'sub')")
    who.add_argument("--anonymous", action="store_true", help="an unauthenticated session")
    explain.add_argument("--role", action="append", default=[], help="a token role (repeatable)")
    explain.add_argument("--alias", help="the alias of the token's issuer ([[auth.issuers]] alias)")
    explain.add_argument("--server", required=True, help="upstream server name")
    explain.add_argument("--method", required=True, help="MCP method, response/<method> or pii/reveal")
    explain.add_argument("--target", help="tool name, resource URI, prompt name, <tool>/<ENTITY>")
    explain.add_argument("--args", help="arguments as a JSON object")
    explain.add_argument("--listing", action="store_true", help="decide as list filtering does")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(func=cmd_explain)


def _file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="guard.toml: take [policy] paths and upstream names from it")
    parser.add_argument("--policy", type=Path, help=f"policy CSV (default: {DEFAULT_POLICY})")
    parser.add_argument("--model", type=Path, help="model conf (default: the built-in model)")


def _show(text: str) -> str:
    """Render request-supplied text safely on a terminal (control characters escaped)."""
    return text if text.isprintable() else repr(text)


def _paths(args: argparse.Namespace, err: TextIO) -> tuple[Path, Path | None, list[str] | None] | None:
    policy: Path | None = args.policy
    model: Path | None = args.model
    servers: list[str] | None = None
    if args.config is not None:
        from guard.config import load

        try:
            settings = load(args.config)
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=err)
            return None
        policy = policy or settings.policy.policy
        model = model or settings.policy.model
        servers = list(settings.upstreams)
    return policy or DEFAULT_POLICY, model, servers


def _read(path: Path, err: TextIO) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: {path}: cannot read: {exc}", file=err)
        return None


def cmd_check(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from guard.policy.lint import check_texts

    resolved = _paths(args, err)
    if resolved is None:
        return 2
    policy, model, servers = resolved
    policy_text = _read(policy, err)
    model_text = _read(model, err) if model is not None else None
    if policy_text is None or (model is not None and model_text is None):
        return 2
    roles = [r.strip() for r in args.roles.split(",") if r.strip()] if args.roles else None
    report = check_texts(model_text, policy_text, policy_name=str(policy),
                         model_name=str(model) if model else "model", servers=servers, known_roles=roles)
    for problem in report.problems:
        print(problem, file=out)
    print(f"{policy}: {report.rules} rules, {report.links} role links: {len(report.errors)} errors, "
          f"{len(report.warnings)} warnings", file=out)
    if report.errors:
        return 1
    return 1 if args.strict and report.warnings else 0


def _load(policy: Path, model: Path | None, err: TextIO) -> Snapshot | None:
    from guard.policy.store import PolicyLoadError, load_files

    try:
        return load_files(policy, model)
    except PolicyLoadError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=err)
        return None


def cmd_test(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from guard.policy.cases import CasesError, format_results, load_cases, run_cases

    try:
        cases = load_cases(args.cases)
    except CasesError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=err)
        return 2
    policy = args.policy or cases.policy or DEFAULT_POLICY
    snapshot = _load(policy, args.model or cases.model, err)
    if snapshot is None:
        return 2
    results = run_cases(snapshot, cases.cases)
    print(format_results(results, verbose=args.verbose), file=out)
    return 0 if all(r.passed for r in results) else 1


def _rule_line(rule: Rule) -> str:
    return f"{'allow' if rule.allow else 'deny ':5}  {rule.location:<16} {rule.text}"


def cmd_explain(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    resolved = _paths(args, err)
    if resolved is None:
        return 2
    policy, model, _servers = resolved
    snapshot = _load(policy, model, err)
    if snapshot is None:
        return 2
    arguments: Any = None
    if args.args is not None:
        try:
            arguments = json.loads(args.args)
        except json.JSONDecodeError as exc:
            print(f"error: --args is not JSON: {exc}", file=err)
            return 2
    if args.listing:
        arguments = ANY_ARGUMENTS
    roles = tuple(r for value in args.role for r in [value] if r)
    principal = (Principal(subject=ANONYMOUS.subject, roles=roles, anonymous=True) if args.anonymous
                 else Principal(subject=args.sub, roles=roles, namespace=args.alias or None))
    evaluation = snapshot.evaluate(principal, args.server, args.method, args.target, arguments)
    reference = _casbin_verdict(snapshot, principal, args, arguments)
    if args.json:
        print(json.dumps(_as_json(evaluation, reference), indent=2), file=out)
    else:
        _print_explanation(evaluation, reference, principal, args, out)
    return 0


def _casbin_verdict(snapshot: Snapshot, principal: Principal, args: argparse.Namespace,
                    arguments: Any) -> bool | None:
    """Casbin's own answer (None in listing mode, which Casbin has no notion of)."""
    if arguments is ANY_ARGUMENTS:
        return None
    from guard.policy.casbin_ref import build_enforcer, casbin_decide

    allowed, _rule = casbin_decide(build_enforcer(snapshot), principal, args.server, args.method, args.target,
                                   arguments)
    return allowed


def _print_explanation(ev: Evaluation, reference: bool | None, principal: Principal, args: argparse.Namespace,
                       out: TextIO) -> None:
    d = ev.decision
    print(f"decision:  {'ALLOW' if d.allowed else 'DENY'} ({d.reason})", file=out)
    deciding = next((r for r in ev.matched if r.described == d.rule), None)
    if deciding is not None:
        print(f"rule:      {deciding.location}  {deciding.text}", file=out)
    elif not d.allowed:
        print("rule:      none (no allow rule matched: default deny)" if d.reason == "default_deny"
              else "rule:      none", file=out)
    print(f"subject:   {', '.join(_show(name) for name in subject_names(principal))}", file=out)
    print(f"holds:     {', '.join(_show(s) for s in sorted(ev.subjects))}", file=out)
    print(f"request:   server={_show(args.server)} method={_show(args.method)} "
          f"target={_show(args.target or '')}", file=out)
    if ev.matched:
        print("matching rules (file order; a deny overrides every allow):", file=out)
        for rule in ev.matched:
            print(f"  {_rule_line(rule)}", file=out)
    if ev.unmet:
        print("rules that matched except for their condition:", file=out)
        for rule, failed in ev.unmet:
            print(f"  {_rule_line(rule)}", file=out)
            print(f"         condition not met: {' && '.join(failed)}", file=out)
    if ev.undecided:
        print("conditions these arguments cannot decide (a deny applies, an allow does not):", file=out)
        for rule, failed in ev.undecided:
            print(f"  {_rule_line(rule)}", file=out)
            print(f"         not decided: {' && '.join(failed)}", file=out)
    if reference is not None:
        agree = "agrees" if reference == d.allowed else "DISAGREES -- please report this"
        print(f"casbin:    {'allow' if reference else 'deny'} (reference enforcer {agree})", file=out)


def _as_json(ev: Evaluation, reference: bool | None) -> dict[str, Any]:
    return {
        "allowed": ev.decision.allowed,
        "reason": ev.decision.reason,
        "rule": ev.decision.rule,
        "subjects": sorted(ev.subjects),
        "target": ev.target,
        "matched": [{"location": r.location, "rule": r.text, "effect": "allow" if r.allow else "deny"}
                    for r in ev.matched],
        "unmet": [{"location": r.location, "rule": r.text, "failed": list(f)} for r, f in ev.unmet],
        "undecided": [{"location": r.location, "rule": r.text, "clauses": list(f)} for r, f in ev.undecided],
        "casbin": reference,
    }


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m guard.policy.cli policy check ...``) until the main CLI wires it."""
    parser = argparse.ArgumentParser(prog="guard")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

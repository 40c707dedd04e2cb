"""``guard policy test``: a table of requests and the decisions a policy must give (like ``opa test``).

A cases file is TOML::

    policy = "policy.csv"          # relative to this file (the CLI's --policy overrides)
    # model = "model.conf"         # default: the built-in model

    [[case]]
    name = "analyst may look a customer up"
    subject = "alice"              # or: anonymous = true
    # alias = "partner"            # optional: the token's issuer alias (names become user:partner/alice)
    roles = ["analyst"]
    server = "demo"
    method = "tools/call"
    target = "find_customer"
    arguments = { query = "Ada" }  # optional
    expect = "allow"               # allow | deny
    # rule = "p, role:analyst, demo, tools/call, find_customer, allow"   # optional: the deciding rule
    # reason = "explicit_deny"     # optional: allowed | explicit_deny | undecidable_condition |
    #                              #           default_deny | invalid_target
    # listing = true               # optional: decide as list filtering does (arguments unknown)

Every case is evaluated against one snapshot; a mismatch is reported with what was expected,
what was decided and the rule behind it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.context import ANONYMOUS, Principal
from guard.policy.engine import ANY_ARGUMENTS, Snapshot, subject_names

_CASE_KEYS = {"name", "subject", "alias", "anonymous", "roles", "server", "method", "target", "arguments", "expect",
              "rule", "reason", "listing"}
_TOP_KEYS = {"policy", "model", "case"}


class CasesError(ValueError):
    """The cases file is malformed; ``problems`` lists every issue."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Case:
    name: str
    principal: Principal
    server: str
    method: str
    target: str | None
    arguments: Any
    expect_allow: bool
    rule: str | None = None
    reason: str | None = None
    listing: bool = False


@dataclass(frozen=True)
class CasesFile:
    path: Path
    cases: tuple[Case, ...]
    policy: Path | None = None
    model: Path | None = None


@dataclass(frozen=True)
class CaseResult:
    case: Case
    allowed: bool
    reason: str
    rule: str | None
    failures: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures


def _string(raw: Mapping[str, Any], key: str, where: str, problems: list[str], required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            problems.append(f"{where}: {key} is required")
        return None
    if not isinstance(value, str):
        problems.append(f"{where}: {key} must be a string")
        return None
    return value


def _case(raw: Any, index: int, problems: list[str]) -> Case | None:
    where = f"case {index}"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: must be a table")
        return None
    name = raw.get("name")
    if isinstance(name, str):
        where = f"case {index} ({name!r})"
    for key in raw:
        if key not in _CASE_KEYS:
            problems.append(f"{where}: unknown key {key!r}")
    before = len(problems)
    anonymous = raw.get("anonymous", False)
    if not isinstance(anonymous, bool):
        problems.append(f"{where}: anonymous must be true or false")
        anonymous = False
    subject = _string(raw, "subject", where, problems, required=not anonymous)
    roles = raw.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        problems.append(f"{where}: roles must be a list of strings")
        roles = []
    alias = _string(raw, "alias", where, problems, required=False)
    server = _string(raw, "server", where, problems)
    method = _string(raw, "method", where, problems)
    target = _string(raw, "target", where, problems, required=False)
    expect = raw.get("expect")
    if expect not in ("allow", "deny"):
        problems.append(f"{where}: expect must be \"allow\" or \"deny\"")
    listing = raw.get("listing", False)
    if not isinstance(listing, bool):
        problems.append(f"{where}: listing must be true or false")
    rule = _string(raw, "rule", where, problems, required=False)
    reason = _string(raw, "reason", where, problems, required=False)
    if len(problems) > before or server is None or method is None:
        return None
    if anonymous:
        principal = Principal(subject=ANONYMOUS.subject, roles=tuple(roles), anonymous=True)
    else:
        principal = Principal(subject=subject or "", roles=tuple(roles), namespace=alias or None)
    return Case(
        name=name if isinstance(name, str) else f"case {index}",
        principal=principal, server=server, method=method, target=target,
        arguments=raw.get("arguments"), expect_allow=expect == "allow", rule=rule, reason=reason,
        listing=bool(listing),
    )


def load_cases(path: Path) -> CasesFile:
    """Read a cases file; raises :class:`CasesError` with every problem found."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CasesError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CasesError([f"{path}: not valid TOML: {exc}"]) from exc
    problems: list[str] = [f"{path}: unknown key {k!r}" for k in raw if k not in _TOP_KEYS]
    items = raw.get("case", [])
    if not isinstance(items, list) or not items:
        problems.append(f"{path}: needs at least one [[case]]")
        items = []
    cases = [c for i, item in enumerate(items, start=1) if (c := _case(item, i, problems)) is not None]
    paths: dict[str, Path | None] = {}
    for key in ("policy", "model"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f"{path}: {key} must be a string")
            value = None
        paths[key] = (path.parent / value) if isinstance(value, str) else None
    if problems:
        raise CasesError(problems)
    return CasesFile(path, tuple(cases), paths["policy"], paths["model"])


def run_case(snapshot: Snapshot, case: Case) -> CaseResult:
    arguments = ANY_ARGUMENTS if case.listing else case.arguments
    decision = snapshot.decide(case.principal, case.server, case.method, case.target, arguments)
    failures: list[str] = []
    if decision.allowed != case.expect_allow:
        failures.append(f"expected {'allow' if case.expect_allow else 'deny'}, "
                        f"got {'allow' if decision.allowed else 'deny'}")
    if case.rule is not None and decision.rule != case.rule:
        failures.append(f"expected rule {case.rule!r}, got {decision.rule!r}")
    if case.reason is not None and decision.reason != case.reason:
        failures.append(f"expected reason {case.reason!r}, got {decision.reason!r}")
    return CaseResult(case, decision.allowed, decision.reason, decision.rule, tuple(failures))


def run_cases(snapshot: Snapshot, cases: tuple[Case, ...] | list[Case]) -> list[CaseResult]:
    return [run_case(snapshot, case) for case in cases]


def format_results(results: list[CaseResult], *, verbose: bool = False) -> str:
    """A readable report: failures in detail, passes as one line each when ``verbose``."""
    lines: list[str] = []
    for result in results:
        case = result.case
        if result.passed:
            if verbose:
                lines.append(f"PASS  {case.name}")
            continue
        lines.append(f"FAIL  {case.name}")
        request = (f"{_who(case.principal)} {case.server} {case.method} {case.target or ''}".rstrip())
        lines.append(f"      request:  {request}")
        if case.arguments is not None:
            lines.append(f"      args:     {case.arguments!r}")
        for failure in result.failures:
            lines.append(f"      {failure}")
        lines.append(f"      decided:  {'allow' if result.allowed else 'deny'} ({result.reason})"
                     + (f" by {result.rule}" if result.rule else ""))
    passed = sum(1 for r in results if r.passed)
    failed = len(results) - passed
    if lines:
        lines.append("-" * 72)
    lines.append(f"PASS: {passed}/{len(results)}")
    if failed:
        lines.append(f"FAIL: {failed}/{len(results)}")
    return "\n".join(lines)


def _who(principal: Principal) -> str:
    first, *roles = subject_names(principal)
    return first + (" [" + ", ".join(roles) + "]" if roles else "")

"""``guard audit verify`` over a fleet: every chain verified on its own, one verdict for all.

:func:`verify_fleet` groups the files into chains (:mod:`guard.audit.chains`: one per
replica / worker / log path) and runs :func:`guard.audit.verify.verify` on each. The
overall status is the worst chain's (tampered > unverifiable > in flight at crash > torn >
intact), and so is the exit code. With a single chain the output is exactly
:class:`~guard.audit.verify.Result`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.audit import chains as chainmod
from guard.audit.verify import (
    EXIT_IN_FLIGHT,
    EXIT_INTACT,
    EXIT_TAMPERED,
    EXIT_TORN,
    EXIT_UNVERIFIABLE,
    Issue,
    Result,
    Status,
    verify,
)
from guard.crypto.signing import VerifyKey

_SEVERITY: tuple[Status, ...] = ("tampered", "unverifiable", "in_flight", "torn", "intact")
_EXIT = {"tampered": EXIT_TAMPERED, "unverifiable": EXIT_UNVERIFIABLE, "in_flight": EXIT_IN_FLIGHT,
         "torn": EXIT_TORN, "intact": EXIT_INTACT}


@dataclass
class ChainResult:
    label: str
    replica: str | None
    files: list[str]
    result: Result


@dataclass
class FleetResult:
    chains: list[ChainResult] = field(default_factory=list)
    notes: list[Issue] = field(default_factory=list)
    """Problems outside any chain (a checkpoint file that matches no chain)."""

    @property
    def status(self) -> Status:
        statuses = {c.result.status for c in self.chains}
        if any(n.kind == "unverifiable" for n in self.notes):
            statuses.add("unverifiable")
        for status in _SEVERITY:
            if status in statuses:
                return status
        return "unverifiable"  # no chain at all

    @property
    def exit_code(self) -> int:
        return _EXIT[self.status]

    @property
    def records(self) -> int:
        return sum(c.result.records for c in self.chains)

    def render(self) -> str:
        if len(self.chains) == 1 and not self.notes:
            return self.chains[0].result.render()
        shown = "IN FLIGHT AT CRASH" if self.status == "in_flight" else self.status.upper()
        lines = [f"audit verify: {shown} ({len(self.chains)} chain(s), {self.records} record(s))"]
        for chain in self.chains:
            lines.append(f"== chain {chain.label} ({len(chain.files)} file(s))")
            lines.extend("  " + line for line in chain.result.render().splitlines())
        for note in self.notes:
            lines.append(f"  [{note.kind}] {note.message}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        if len(self.chains) == 1 and not self.notes:
            return {**self.chains[0].result.to_json(), "chain": self.chains[0].label,
                    "replica": self.chains[0].replica}
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "records": self.records,
            "chains": [{"chain": c.label, "replica": c.replica, **c.result.to_json()} for c in self.chains],
            "issues": [n.to_json() for n in self.notes],
        }


def verify_fleet(paths: Iterable[str | Path], *, keys: Iterable[VerifyKey] = (),
                 checkpoint_files: Iterable[str | Path] = ()) -> FleetResult:
    """Verify every chain among ``paths`` (files, directories, globs of one guard or a whole fleet)."""
    keys = list(keys)
    fleet = chainmod.group([*paths, *checkpoint_files])
    out = FleetResult()
    if not fleet.chains:
        out.chains.append(ChainResult("-", None, [], verify([*paths, *checkpoint_files], keys=keys)))
        return out
    for i, chain in enumerate(fleet.chains):
        extra: list[str | Path] = [*fleet.missing, *fleet.empty] if i == 0 else []
        files = [*chain.logs, *chain.checkpoints, *extra]
        out.chains.append(ChainResult(chain.label, chain.replica, [str(p) for p in chain.logs],
                                      verify(files, keys=keys)))
    for cp in fleet.unmatched_checkpoints:
        out.notes.append(Issue("unverifiable", f"{cp.name}: checkpoint file matches no chain among the files "
                               "given; verify it together with its own chain's files"))
    return out

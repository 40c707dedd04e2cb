"""``guard audit verify``: check the hash chain and the signed checkpoints of audit files.

What is checked, in chain order across every file given (any order, directories, globs):

* every line is valid JSON *in canonical form* (:mod:`guard.audit.canonical`);
* sequence numbers run 1, 2, 3, ... with no gap, repeat or reordering;
* ``guard.chain.prev`` of each record is the SHA-256 of the previous record, also
  across rotated files; every file starts with its ``audit-file-opened`` header;
* every checkpoint's Ed25519 signature is valid for a given public key, and its
  ``count``/``head`` match the records (so a rewritten, re-chained stretch is caught);
* no more than ``every`` records follow a checkpoint (a removed checkpoint is caught);
* nothing follows the seal a clean shutdown writes (``audit-stopped`` + checkpoint);
* checkpoints in a separate checkpoint file match, and none covers more records than
  the log holds (truncation back past a checkpoint is caught);
* torn final lines (a crash mid-write) are told apart from tampering: an unfinished
  last line of the newest file is *torn*; one in an older file must have been
  recorded (length and SHA-256) by the writer's next header, else it is tampering.

Which record is "first bad": a single broken link at record *k* means record *k-1*
changed after *k* was written; two consecutive broken links at *k* and *k+1* mean
record *k* itself changed (its ``prev`` field included). A signed checkpoint that no
longer matches a re-chained stretch names the first record after the last checkpoint
that still matched.

Limits (documented for auditors): records after the last checkpoint are chained but
not signed, so they can be cut or replaced undetectably unless the separate checkpoint
file or a later checkpoint covers them; the very last record has no successor, so only
its signed fields (if it is a checkpoint) are protected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from guard.audit import checkpoint as cpmod
from guard.audit import reader, schema
from guard.audit.canonical import GENESIS, canonical, digest
from guard.audit.inflight import InFlightTracker
from guard.crypto.signing import VerifyKey

EXIT_INTACT = 0
EXIT_UNVERIFIABLE = 3
EXIT_TORN = 4
EXIT_TAMPERED = 5
EXIT_IN_FLIGHT = 6

IssueKind = Literal["tampered", "unverifiable", "in_flight", "torn", "note"]
Status = Literal["tampered", "unverifiable", "in_flight", "torn", "intact"]
_LAST = 1 << 60


@dataclass(frozen=True)
class Where:
    """A place in the audit files: file name, line number and sequence number when known."""

    file: str
    line: int | None = None
    seq: int | None = None

    def __str__(self) -> str:
        text = self.file if self.line is None else f"{self.file}:{self.line}"
        return text if self.seq is None else f"{text} (seq {self.seq})"


@dataclass(frozen=True)
class Issue:
    kind: IssueKind
    message: str
    where: Where | None = None
    order: tuple[int, int] = (_LAST, 0)
    """Chain position (file index, line) used to pick the first bad record."""
    precise: bool = True
    """False when the issue bounds a range (a checkpoint mismatch) rather than naming the record."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.where is not None:
            out["file"] = self.where.file
            out["line"] = self.where.line
            out["seq"] = self.where.seq
        return out


@dataclass
class FileSummary:
    path: str
    role: Literal["log", "checkpoints", "empty"]
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    torn: bool = False


@dataclass
class Result:
    """Everything verify found; ``status``/``exit_code`` summarize it."""

    issues: list[Issue] = field(default_factory=list)
    files: list[FileSummary] = field(default_factory=list)
    records: int = 0
    checkpoints_valid: int = 0
    last_checkpoint_seq: int | None = None
    uncovered: int = 0

    in_flight: int = 0
    """Write-ahead request records whose outcome was never recorded (:mod:`guard.audit.inflight`)."""

    @property
    def status(self) -> Status:
        kinds = {i.kind for i in self.issues}
        if "tampered" in kinds:
            return "tampered"
        if "unverifiable" in kinds:
            return "unverifiable"
        if "in_flight" in kinds:
            return "in_flight"
        if "torn" in kinds:
            return "torn"
        return "intact"

    @property
    def exit_code(self) -> int:
        return {"tampered": EXIT_TAMPERED, "unverifiable": EXIT_UNVERIFIABLE, "in_flight": EXIT_IN_FLIGHT,
                "torn": EXIT_TORN, "intact": EXIT_INTACT}[self.status]

    @property
    def first_bad(self) -> Issue | None:
        tampered = [i for i in self.issues if i.kind == "tampered"]
        precise = [i for i in tampered if i.precise] or tampered
        return min(precise, key=lambda i: i.order) if precise else None

    def to_json(self) -> dict[str, Any]:
        first = self.first_bad
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "first_bad": first.to_json() if first else None,
            "records": self.records,
            "checkpoints_valid": self.checkpoints_valid,
            "last_checkpoint_seq": self.last_checkpoint_seq,
            "uncovered_records": self.uncovered,
            "in_flight": self.in_flight,
            "files": [vars(f) for f in self.files],
            "issues": [i.to_json() for i in self.issues],
        }

    def render(self) -> str:
        status = "IN FLIGHT AT CRASH" if self.status == "in_flight" else self.status.upper()
        lines = [f"audit verify: {status}"]
        first = self.first_bad
        if first is not None:
            lines.append(f"first bad record: {first.where}: {first.message}")
        lines.append(
            f"{self.records} record(s) in {sum(f.role == 'log' for f in self.files)} file(s); "
            f"{self.checkpoints_valid} valid checkpoint(s); last checkpoint covers seq "
            f"{self.last_checkpoint_seq if self.last_checkpoint_seq is not None else '-'}"
        )
        for issue in self.issues:
            where = f"{issue.where}: " if issue.where is not None else ""
            lines.append(f"  [{issue.kind}] {where}{issue.message}")
        return "\n".join(lines)


@dataclass
class _Rec:
    where: Where
    order: tuple[int, int]


class _Walker:
    """Streams records in chain order and collects issues (see module docstring)."""

    def __init__(self, ring: Mapping[str, VerifyKey], result: Result) -> None:
        self.ring = ring
        self.result = result
        self.expected: int | None = None
        self.head: str | None = None
        self.prev: _Rec | None = None
        self.pending: tuple[_Rec, _Rec] | None = None
        self.since_cp = 0
        self.every: int | None = None
        self.gap_reported = False
        self.anchor_seq: int | None = None
        self.first_unanchored: _Rec | None = None
        self.prev_action: str | None = None
        self.sealed: Where | None = None
        self.prev_torn: dict[str, Any] | None = None
        self.prev_file: str | None = None
        self.unknown_keys: dict[str, int] = {}
        self.external: list[tuple[int, dict[str, Any], Where]] = []
        self.ext_i = 0
        self.last: _Rec | None = None
        self.in_flight = InFlightTracker()

    def add(self, kind: IssueKind, message: str, rec: _Rec | None = None, precise: bool = True) -> None:
        self.result.issues.append(
            Issue(kind, message, rec.where if rec else None, rec.order if rec else (_LAST, 0), precise)
        )

    # -- per file -------------------------------------------------------------------

    def walk_file(self, index: int, path: Path, summary: FileSummary) -> None:
        self.sealed = None
        torn: dict[str, Any] | None = None
        for number, raw, complete in reader.lines(path):
            rec = _Rec(Where(path.name, number), (index, number))
            if not complete:
                summary.torn = True
                torn = {"bytes": len(raw), "sha256": digest(raw), "rec": rec}
                break
            self.record(rec, raw, number, summary)
        self.prev_torn = torn
        self.prev_file = path.name

    def record(self, rec: _Rec, raw: bytes, number: int, summary: FileSummary) -> None:
        self.result.records += 1
        summary.records += 1
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.add("tampered", "line is not valid JSON (edited or inserted)", rec)
            self._lost_link()
            return
        chain = obj.get("guard", {}).get("chain") if isinstance(obj, dict) else None
        seq = chain.get("seq") if isinstance(chain, dict) else None
        prev = chain.get("prev") if isinstance(chain, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(prev, str):
            self.add("tampered", "record has no chain fields (guard.chain.seq/prev)", rec)
            self._lost_link()
            return
        rec = _Rec(Where(rec.where.file, rec.where.line, seq), rec.order)
        try:
            is_canonical = canonical(obj) == raw
        except TypeError:
            is_canonical = False
        if not is_canonical:
            self.add("tampered", "record is not in canonical form (edited by hand or by a tool)", rec)
        summary.first_seq = seq if summary.first_seq is None else summary.first_seq
        summary.last_seq = seq
        actual = digest(raw)
        if self.first_unanchored is None:
            self.first_unanchored = rec
        self._link(rec, seq, prev)
        self._semantics(rec, obj, number)
        self.in_flight.feed(obj, rec.where, rec.order)
        self._external_at(seq, actual, rec)
        self.head = actual
        self.expected = seq + 1
        self.prev = rec
        self.last = rec

    def _lost_link(self) -> None:
        self.head = None
        if self.expected is not None:
            self.expected += 1

    def _link(self, rec: _Rec, seq: int, prev: str) -> None:
        if self.expected is None:
            if seq == 1 and prev != GENESIS:
                self.add("tampered", "the first record does not chain to the genesis hash", rec)
            elif seq > 1:
                self.add("unverifiable", f"the chain starts at seq {seq}: earlier files were not given "
                         "(or were removed)", rec)
            self._flush_pending()
            return
        if seq > self.expected:
            self.add("tampered", f"expected seq {self.expected} here but found seq {seq}: "
                     f"record(s) {self.expected}..{seq - 1} were deleted or moved", rec)
            self._flush_pending()
            return
        if seq < self.expected:
            self.add("tampered", f"seq {seq} appears after seq {self.expected - 1}: a record was inserted, "
                     "duplicated or moved", rec)
            self._flush_pending()
            return
        if self.head is None or prev == self.head:
            self._flush_pending()
            return
        # A broken link: decide with one record of lookahead which record changed.
        if self.pending is not None and self.prev is not None and self.pending[1] is self.prev:
            _, changed = self.pending
            self.pending = None
            self.add("tampered", "record was modified (its own link and its hash are both off)",
                     changed)
            return
        self._flush_pending()
        if self.prev is not None:
            self.pending = (self.prev, rec)

    def _flush_pending(self) -> None:
        if self.pending is not None:
            before, _after = self.pending
            self.pending = None
            self.add("tampered", "record was modified after the next record was written "
                     "(its hash does not match the next record's prev)", before)

    def finish_chain(self) -> None:
        if self.pending is not None:
            _before, after = self.pending
            self.pending = None
            if after is self.last:
                self.add("tampered", "the final record does not chain to the record before it "
                         "(appended/forged, or its link was edited)", after)
            else:
                self._flush_pending()

    def _semantics(self, rec: _Rec, obj: dict[str, Any], number: int) -> None:
        event = obj.get("event")
        action = event.get("action") if isinstance(event, dict) else None
        found = obj.get("guard")
        guard: dict[str, Any] = found if isinstance(found, dict) else {}
        if self.sealed is not None:
            self.add("tampered", f"record after the log was sealed at shutdown ({self.sealed})", rec)
            self.sealed = None
        if number == 1 and action != schema.ACTION_FILE_OPENED:
            self.add("tampered", "file does not start with its audit-file-opened header "
                     "(records removed from its start?)", rec)
        if action == schema.ACTION_FILE_OPENED:
            self._header(rec, guard.get("audit"), number)
        if action == schema.ACTION_CHECKPOINT:
            self._checkpoint(rec, guard.get("checkpoint"))
        else:
            self.since_cp += 1
            if self.every is not None and self.since_cp > self.every and not self.gap_reported:
                self.gap_reported = True
                self.add("tampered", f"more than {self.every} records without a checkpoint: "
                         "a checkpoint record was removed", rec, precise=False)
        self.prev_action = action if isinstance(action, str) else None

    def _header(self, rec: _Rec, audit: Any, number: int) -> None:
        if number != 1:
            self.add("tampered", "a file header in the middle of a file (inserted record)", rec)
        audit = audit if isinstance(audit, dict) else {}
        every = audit.get("checkpoint_every")
        if isinstance(every, int) and not isinstance(every, bool) and every > 0:
            self.every = every
        if audit.get("reason") in ("start", "recover"):
            self.since_cp = 0
            self.gap_reported = False
        torn = self.prev_torn
        noted = audit.get("torn_tail")
        if torn is not None:
            if isinstance(noted, dict) and noted.get("bytes") == torn["bytes"] \
                    and noted.get("sha256") == torn["sha256"]:
                self.add("note", f"torn final line of {self.prev_file} ({torn['bytes']} bytes) was recorded "
                         "by the writer at restart (a crash, not tampering)", torn["rec"])
            else:
                self.add("tampered", f"{torn['bytes']} byte(s) after the last record of {self.prev_file} "
                         "were not there when the writer moved on (appended later)", torn["rec"])
        elif isinstance(noted, dict) and number == 1 and self.prev_file is not None:
            self.add("note", f"the torn line the writer recorded at the end of {self.prev_file} is gone", rec)
        self.prev_torn = None

    def _checkpoint(self, rec: _Rec, cp: Any) -> None:
        self.since_cp = 0
        self.gap_reported = False
        valid = cpmod.check(cp, self.ring)
        if valid is None and isinstance(cp, dict):
            key_id = str(cp.get("key_id"))
            self.unknown_keys[key_id] = self.unknown_keys.get(key_id, 0) + 1
            return
        if not valid:
            self.add("tampered", "checkpoint is malformed or its signature is invalid", rec)
            return
        if not isinstance(cp, dict):
            return
        self.result.checkpoints_valid += 1
        self._policy(cp)
        seq = rec.where.seq or 0
        if cp["count"] != seq - 1 or cp["head"] != self.head:
            self._mismatch(rec, cp["count"])
            return
        self._anchor(cp["count"])
        if self.prev_action == schema.ACTION_STOPPED:
            self.sealed = rec.where

    def _policy(self, cp: Mapping[str, Any]) -> None:
        every = cp.get("every")
        if isinstance(every, int) and every > 0:
            self.every = every

    def _anchor(self, count: int) -> None:
        """Records up to ``count`` are proven by a signature; the next record starts the unproven stretch."""
        if self.anchor_seq is None or count >= self.anchor_seq:
            self.anchor_seq = count
            self.first_unanchored = None
            self.result.last_checkpoint_seq = count

    def _mismatch(self, rec: _Rec, count: int) -> None:
        first = self.first_unanchored or rec
        start = first.where.seq if first.where.seq is not None else (self.anchor_seq or 0) + 1
        self.add("tampered", f"a valid signed checkpoint for {count} records ({rec.where}) does not match "
                 f"them: a record in seq {start}..{count} was modified, removed or re-chained; this is the "
                 "first record after the last checkpoint that matched", first, precise=False)

    # -- external checkpoints -------------------------------------------------------

    def load_external(self, index: int, path: Path, summary: FileSummary) -> None:
        for number, raw, complete in reader.lines(path):
            rec = _Rec(Where(path.name, number), (index, number))
            if not complete:
                summary.torn = True
                self.add("torn", "final line of the checkpoint file is incomplete (a crash mid-write?)", rec)
                break
            try:
                obj = orjson.loads(raw)
                cp = obj[cpmod.EXTERNAL_KEY]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self.add("tampered", "checkpoint file line is not a checkpoint", rec)
                continue
            valid = cpmod.check(cp, self.ring)
            if valid is None:
                key = str(cp.get("key_id")) if isinstance(cp, dict) else "?"
                self.unknown_keys[key] = self.unknown_keys.get(key, 0) + 1
                continue
            if not valid or canonical(obj) != raw:
                self.add("tampered", "checkpoint file entry is malformed or its signature is invalid", rec)
                continue
            summary.checkpoints += 1
            self.external.append((cp["count"], cp, rec.where))
        self.external.sort(key=lambda item: item[0])

    def _external_at(self, seq: int, actual: str, rec: _Rec) -> None:
        while self.ext_i < len(self.external) and self.external[self.ext_i][0] <= seq:
            count, cp, _where = self.external[self.ext_i]
            self.ext_i += 1
            if count < seq:
                continue  # covers records before those given, or a gap already reported
            if cp["head"] != actual:
                self._mismatch(rec, count)
            else:
                self._anchor(count)
                self.result.checkpoints_valid += 1

    def finish_external(self) -> None:
        remaining = self.external[self.ext_i:]
        if not remaining:
            return
        count, _cp, where = remaining[-1]
        last = self.last
        last_seq = last.where.seq if last is not None and last.where.seq is not None else 0
        file = last.where.file if last is not None else "?"
        order = (last.order[0], last.order[1] + 1) if last is not None else (_LAST, 0)
        self.result.issues.append(Issue(
            "tampered",
            f"the checkpoint at {where} covers {count} records but the log ends at seq {last_seq}: "
            f"records {last_seq + 1}..{count} were truncated",
            Where(file, None, last_seq + 1), order,
        ))


def verify(paths: Iterable[str | Path], *, keys: Iterable[VerifyKey] = (),
           checkpoint_files: Iterable[str | Path] = ()) -> Result:
    """Verify the audit files named by ``paths`` (files, directories, globs; any order)."""
    result = Result()
    ring = {k.key_id: k for k in keys}
    files = reader.collect(list(paths) + list(checkpoint_files))
    walker = _Walker(ring, result)
    for missing in files.missing:
        result.issues.append(Issue("unverifiable", f"{missing}: no such file"))
    for empty in files.empty:
        result.files.append(FileSummary(str(empty), "empty"))
        result.issues.append(Issue("unverifiable", "file is empty: whatever it held is gone", Where(empty.name)))
    for i, path in enumerate(files.checkpoints):
        summary = FileSummary(str(path), "checkpoints")
        result.files.append(summary)
        walker.load_external(-1 - i, path, summary)
    count = len(files.logs)
    for index, path in enumerate(files.logs):
        summary = FileSummary(str(path), "log")
        result.files.append(summary)
        walker.walk_file(index, path, summary)
        if index < count - 1:
            continue
        if walker.prev_torn is not None:
            torn = walker.prev_torn
            result.issues.append(Issue(
                "torn", f"the final line is incomplete ({torn['bytes']} bytes): guard stopped mid-write; "
                "the records before it are checked", torn["rec"].where, torn["rec"].order))
    walker.finish_chain()
    walker.finish_external()
    for pending in walker.in_flight.unresolved():
        result.in_flight += 1
        result.issues.append(Issue(
            "in_flight", f"{pending.method} request was forwarded but its outcome was never recorded: in flight "
            "at crash (guard stopped without closing the session), or still in flight if guard is running",
            pending.where, pending.order))
    if not files.logs:
        result.issues.append(Issue("unverifiable", "no audit records found"))
    for key_id, n in sorted(walker.unknown_keys.items()):
        hint = "give the public key with --key" if not ring else "no public key with this id was given"
        result.issues.append(Issue("unverifiable", f"{n} checkpoint(s) signed by key id {key_id} were not "
                                   f"checked: {hint}"))
    result.uncovered = walker.since_cp
    if result.records and result.checkpoints_valid == 0 and not walker.unknown_keys:
        result.issues.append(Issue("unverifiable", "no valid signed checkpoint covers any record: nothing "
                                   "proves who wrote these records"))
    elif walker.since_cp:
        result.issues.append(Issue("note", f"{walker.since_cp} record(s) at the end are chained but not yet "
                                   "covered by a signed checkpoint (normal for a live log)"))
    return result

"""The report's "who did what" sections (issue 15): denials, per subject, per server, policy history, keys.

Built from the same records as the rest of :mod:`guard.audit.report` and rendered as plain
HTML tables with stable anchors (``#denials``, ``#subject-<name>``, ``#server-<name>``,
``#policy-history``, ``#integrity``), so an auditor can link to "what bob was refused" and
the file reads without a terminal. Every string from a record is HTML-escaped; nothing here
runs scripts.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.audit import query
from guard.audit.fleet import FleetResult
from guard.crypto.signing import VerifyKey

MAX_ROWS = 500
"""Rows per table; the rest is counted, and ``guard audit query --decision deny`` lists all."""


@dataclass(frozen=True)
class Denial:
    """One refused message or authentication failure, as the report lists it."""

    time: str
    subject: str
    server: str
    method: str
    target: str
    reason: str
    stage: str
    replica: str


@dataclass
class PolicyChange:
    time: str
    ok: bool
    before: Mapping[str, str]
    after: Mapping[str, str]
    rules: int | None
    error: str


@dataclass
class WhoDidWhat:
    denials: list[Denial] = field(default_factory=list)
    requests_by_subject: Counter[str] = field(default_factory=Counter)
    requests_by_server: Counter[str] = field(default_factory=Counter)
    policy: list[PolicyChange] = field(default_factory=list)
    key_ids: Counter[str] = field(default_factory=Counter)
    """Signing key ids named by file headers (how many files each)."""

    def feed(self, rec: dict[str, Any]) -> None:
        get = query.get
        action = get(rec, "event.action")
        if action == "audit-file-opened":
            key_id = get(rec, "guard.audit.signing_key_id")
            if isinstance(key_id, str):
                self.key_ids[key_id] += 1
            return
        if query.is_internal(rec):
            return
        subject = _s(get(rec, "user.name")) or ("(unauthenticated)" if action == "auth_failure" else "-")
        server = _s(get(rec, "service.target.name")) or "-"
        if get(rec, "guard.rpc.kind") == "request" and get(rec, "guard.direction") == "client_to_server":
            self.requests_by_subject[subject] += 1
            self.requests_by_server[server] += 1
        if action == "policy_reload":
            self.policy.append(_policy_change(rec))
            return
        decision = get(rec, "guard.decision")
        refused = isinstance(decision, dict) and decision.get("allowed") is False
        if refused or action == "auth_failure" or query.is_denied(rec):
            stage = decision.get("stage") if isinstance(decision, dict) else None
            reason = (decision.get("reason") if isinstance(decision, dict) else None) or get(rec, "event.reason")
            self.denials.append(Denial(
                time=_s(rec.get("@timestamp")), subject=subject, server=server,
                method=_s(get(rec, "guard.rpc.method")) or (_s(action) if action == "auth_failure" else "-"),
                target=_s(get(rec, "guard.target.name")) or "-", reason=_s(reason) or "unspecified",
                stage=_s(stage) or ("authenticate" if action == "auth_failure" else "-"),
                replica=_s(get(rec, "guard.replica")) or "-",
            ))


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _digests(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str)}


def _policy_change(rec: dict[str, Any]) -> PolicyChange:
    get = query.get
    rules = get(rec, "guard.policy.rules")
    return PolicyChange(
        time=_s(rec.get("@timestamp")), ok=get(rec, "guard.policy.ok") is True,
        before=_digests(get(rec, "guard.policy.previous_digests")), after=_digests(get(rec, "guard.policy.digests")),
        rules=rules if isinstance(rules, int) and not isinstance(rules, bool) else None,
        error=_s(get(rec, "guard.policy.error")),
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def anchor(kind: str, name: str) -> str:
    """A stable, HTML-safe fragment id for a subject or server name."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:60] or "x"
    return f"{kind}-{slug}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"


_HEAD = ('<tr><th>Time (UTC)</th><th>Subject</th><th>Server</th><th>Method</th><th>Target</th>'
         '<th>Stage</th><th>Reason</th><th>Replica</th></tr>')


def _rows(denials: list[Denial]) -> str:
    shown = denials[:MAX_ROWS]
    rows = "".join(
        f'<tr><td class="mono">{_e(d.time)}</td>'
        f'<td><a href="#{anchor("subject", d.subject)}">{_e(d.subject)}</a></td>'
        f'<td><a href="#{anchor("server", d.server)}">{_e(d.server)}</a></td>'
        f'<td>{_e(d.method)}</td><td class="mono">{_e(d.target)}</td><td>{_e(d.stage)}</td>'
        f'<td><b>{_e(d.reason)}</b></td><td>{_e(d.replica)}</td></tr>'
        for d in shown)
    more = (f'<p class="muted">{len(denials) - MAX_ROWS} more not shown: '
            '<span class="mono">guard audit query --decision deny</span> lists them all.</p>'
            if len(denials) > MAX_ROWS else "")
    return f"<table>{_HEAD}{rows}</table>{more}"


def denials_section(who: WhoDidWhat) -> str:
    """Every denial and authentication failure, in time order."""
    if not who.denials:
        return ('<section id="denials"><h2>Denials and authentication failures</h2>'
                '<p class="muted">None in this period.</p></section>')
    ordered = sorted(who.denials, key=lambda d: d.time)
    return (f'<section id="denials"><h2>Denials and authentication failures ({len(ordered)})</h2>'
            '<p class="muted">Every message guard refused (with the stage that refused it and why) and every '
            'refused connection or HTTP request, oldest first. Subjects and servers link to their own view.</p>'
            f"{_rows(ordered)}</section>")


def _view(kind: str, title: str, denials: list[Denial], requests: Counter[str], key: str) -> str:
    by: defaultdict[str, list[Denial]] = defaultdict(list)
    for d in sorted(denials, key=lambda d: d.time):
        by[getattr(d, key)].append(d)
    names = sorted(set(by) | set(requests), key=lambda n: (-len(by.get(n, [])), n))
    if not names:
        return ""
    index = " &middot; ".join(
        f'<a href="#{anchor(kind, n)}">{_e(n)}</a> ({len(by.get(n, []))})' for n in names)
    parts = [f'<section id="{kind}s"><h2>{_e(title)}</h2><p>{index}</p>']
    for name in names:
        refused = by.get(name, [])
        parts.append(f'<h3 id="{anchor(kind, name)}">{_e(name)}</h3><p class="muted">{requests.get(name, 0)} '
                     f"request(s) made, {len(refused)} denial(s) / authentication failure(s)</p>")
        if refused:
            parts.append(_rows(refused))
    parts.append("</section>")
    return "".join(parts)


def subject_view(who: WhoDidWhat) -> str:
    return _view("subject", "By subject", who.denials, who.requests_by_subject, "subject")


def server_view(who: WhoDidWhat) -> str:
    return _view("server", "By server", who.denials, who.requests_by_server, "server")


def policy_section(who: WhoDidWhat) -> str:
    """Every policy reload: when, digest before and after per file, result."""
    if not who.policy:
        return ('<section id="policy-history"><h2>Policy change history</h2>'
                '<p class="muted">No policy reload in this period.</p></section>')
    rows = []
    for change in sorted(who.policy, key=lambda c: c.time):
        files = sorted(set(change.before) | set(change.after))
        cells = "<br>".join(
            f'{_e(Path(f).name)}: <span class="mono">{_e(_short(change.before.get(f)))} &rarr; '
            f'{_e(_short(change.after.get(f)))}</span>' for f in files) or "-"
        result = "applied" if change.ok else f"rejected, previous policy kept: {change.error or 'error'}"
        rules = "" if change.rules is None else str(change.rules)
        rows.append(f'<tr><td class="mono">{_e(change.time)}</td><td>{cells}</td><td class="n">{_e(rules)}</td>'
                    f"<td>{_e(result)}</td></tr>")
    return ('<section id="policy-history"><h2>Policy change history</h2>'
            '<p class="muted">Each reload of the model and policy files, with the SHA-256 of every file before '
            'and after (compare them with the files in your change management).</p>'
            '<table><tr><th>Time (UTC)</th><th>Files: digest before &rarr; after</th><th class="n">Rules</th>'
            f'<th>Result</th></tr>{"".join(rows)}</table></section>')


def _short(digest: str | None) -> str:
    if not digest:
        return "(none)"
    value = digest.removeprefix("sha256:")
    return f"sha256:{value[:16]}…"


def fingerprint(key: VerifyKey) -> str:
    """SHA-256 of the raw Ed25519 public key, colon-separated pairs (what to compare out of band)."""
    digest = hashlib.sha256(key.raw()).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def keys_section(who: WhoDidWhat, keys: Iterable[VerifyKey]) -> str:
    """Which key signs the checkpoints, its fingerprint, and whether the reader checked with it."""
    given = {k.key_id: k for k in keys}
    ids = sorted(set(who.key_ids) | set(given))
    if not ids:
        return '<p class="muted">No signing key is named in these files.</p>'
    rows = []
    for key_id in ids:
        key = given.get(key_id)
        fp = fingerprint(key) if key is not None else "public key not given (--key): signatures not checked"
        rows.append(f'<tr><td class="mono">{_e(key_id)}</td><td class="mono">{_e(fp)}</td>'
                    f'<td class="n">{who.key_ids.get(key_id, 0)}</td></tr>')
    return ('<table><tr><th>Signing key id</th><th>Fingerprint (SHA-256 of the Ed25519 public key)</th>'
            f'<th class="n">Files</th></tr>{"".join(rows)}</table>')


PROVES = {
    "intact": "Every record between the first and the last signed checkpoint is exactly as guard wrote it, in "
              "order, with none removed, inserted or changed, and the checkpoints were signed by the key above.",
    "in_flight": "The records are intact, and some forwarded requests have no recorded outcome: guard stopped "
                 "(crash, kill, power loss) after forwarding them. The calls were made; how they ended is not "
                 "in the log.",
    "torn": "The records are intact up to a final line guard was writing when it stopped; that line is not "
            "evidence of anything.",
    "unverifiable": "Something could not be checked (a missing public key, a missing file, or nothing signed "
                    "yet): this report cannot vouch for the records.",
    "tampered": "The files were changed after guard wrote them: the first bad record is named below. Records "
                "after it cannot be trusted.",
}


def proves_paragraph(fleet: FleetResult) -> str:
    """Plain language: what the integrity status proves, and what it does not."""
    status = fleet.status
    return (
        f"<p><b>What this status proves.</b> {_e(PROVES[status])}</p>"
        "<p><b>What it does not prove.</b> That guard recorded everything it should have (that depends on its "
        "configuration and code, not on the files); that the signing key was not stolen (anyone holding the "
        "private key can write a new, valid-looking log: keep it away from the people audited); anything "
        "about records written after the last signed checkpoint (they are chained but unsigned: the end of "
        "the newest file could be cut without a trace unless a separate checkpoint file or a SIEM copy holds "
        "a later checkpoint); and anything about files not given to the report (a whole chain, or the newest "
        "files of one, can be missing: compare the file list with the replicas you run).</p>"
    )


def chains_section(fleet: FleetResult) -> str:
    """Per chain (replica / worker / log path): status, files in order with their sequence ranges."""
    parts = []
    for chain in fleet.chains:
        result = chain.result
        rows = []
        for f in result.files:
            seqs = f"{f.first_seq}&ndash;{f.last_seq}" if f.first_seq is not None else "&ndash;"
            count = f.records if f.role == "log" else f.checkpoints
            rows.append(f'<tr><td class="mono">{_e(Path(f.path).name)}</td><td>{_e(f.role)}</td>'
                        f'<td class="n">{count}</td><td class="n">{seqs}</td>'
                        f'<td>{"torn final line" if f.torn else ""}</td></tr>')
        first = result.first_bad
        bad = (f'<p><b>First bad record:</b> <span class="mono">{_e(first.where)}</span> {_e(first.message)}</p>'
               if first is not None else "")
        issues = "".join(f"<li><b>{_e(i.kind)}</b> {_e(i.where) + ': ' if i.where else ''}{_e(i.message)}</li>"
                         for i in result.issues[:50])
        shown = "in flight at crash" if result.status == "in_flight" else result.status
        parts.append(
            f'<h3>Chain {_e(chain.label)} <span class="badge {result.status}">{_e(shown.upper())}</span></h3>'
            f"<p>{result.records} record(s), {result.checkpoints_valid} valid signed checkpoint(s), last "
            f"checkpoint covers seq {result.last_checkpoint_seq if result.last_checkpoint_seq else '-'}</p>{bad}"
            '<table><tr><th>File</th><th>Kind</th><th class="n">Records / checkpoints</th>'
            f'<th class="n">Sequence</th><th>Note</th></tr>{"".join(rows)}</table>'
            + (f"<ul>{issues}</ul>" if issues else ""))
    for note in fleet.notes:
        parts.append(f"<p><b>{_e(note.kind)}</b> {_e(note.message)}</p>")
    return "".join(parts)

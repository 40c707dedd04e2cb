"""``guard audit report``: a self-contained HTML report for compliance reviews.

One HTML file with inline CSS and inline SVG charts: no scripts, no external assets
(a Content-Security-Policy meta tag forbids loading any), so it opens offline, can be
archived as evidence and renders the same anywhere. Sections: summary, integrity per
chain (the result of ``guard audit verify`` over the same files, with the signing key's
id and fingerprint and what the status proves and does not), requests and denials over
time, top subjects, top targets, PII findings by entity type and action, top denial
reasons, and "who did what" (:mod:`guard.audit.report_sections`): every denial and
authentication failure, the same per subject and per server (anchored sections), and
the policy change history.

Every string taken from a record is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard import __version__
from guard.audit import query
from guard.audit import report_sections as sections
from guard.audit.canonical import rfc3339
from guard.audit.fleet import verify_fleet
from guard.crypto.signing import VerifyKey

ALLOWED_COLOR = "#4c78a8"
DENIED_COLOR = "#e45756"
PII_COLORS = ("#f58518", "#54a24b", "#b279a2", "#72b7b2", "#eeca3b", "#9d755d", "#bab0ac", "#ff9da6")
_BUCKETS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)

_CSS = """
body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1d2330;margin:0;
background:#f5f6f8}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:0 0 12px}
.sub{color:#5b6472;margin-bottom:20px}
section{background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:18px 20px;margin:16px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 150px;background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:12px 14px}
.card b{display:block;font-size:24px}.card span{color:#5b6472;font-size:12px;text-transform:uppercase}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
th{color:#5b6472;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:700;color:#fff}
.intact{background:#2e8540}.tampered{background:#c0392b}.unverifiable{background:#b7791f}.torn{background:#6b46c1}
.in_flight{background:#d35400}h3{font-size:15px;margin:18px 0 8px}a{color:#2c5aa0}
nav{margin:10px 0 0;font-size:13px}nav a{margin-right:12px}
.legend span{display:inline-block;margin-right:14px;font-size:12px;color:#5b6472}
.legend i{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:2px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:16px}.two section{margin:0}
.muted{color:#5b6472}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
svg{display:block;height:auto}svg text{font-size:11px;fill:#5b6472}
"""


@dataclass
class _Stats:
    records: int = 0
    requests: int = 0
    denied: int = 0
    auth_failures: int = 0
    sessions: set[str] = field(default_factory=set)
    pii_findings: int = 0
    first: float | None = None
    last: float | None = None
    times: list[tuple[float, bool, bool]] = field(default_factory=list)
    subjects: Counter[str] = field(default_factory=Counter)
    subjects_denied: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    targets_denied: Counter[str] = field(default_factory=Counter)
    pii: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    reasons: Counter[str] = field(default_factory=Counter)


def _collect(records: Iterable[dict[str, Any]], who: sections.WhoDidWhat | None = None) -> _Stats:
    s = _Stats()
    get = query.get
    for rec in records:
        if who is not None:
            who.feed(rec)
        if query.is_internal(rec):
            continue
        s.records += 1
        when = query.timestamp(rec)
        if when is not None:
            s.first = when if s.first is None else min(s.first, when)
            s.last = when if s.last is None else max(s.last, when)
        session = get(rec, "guard.session.id")
        if isinstance(session, str):
            s.sessions.add(session)
        denied = query.is_denied(rec)
        if get(rec, "event.action") == "auth_failure":
            s.auth_failures += 1
        is_request = get(rec, "guard.rpc.kind") == "request"
        if is_request:
            s.requests += 1
        if denied:
            s.denied += 1
            s.reasons[str(get(rec, "event.reason") or get(rec, "guard.verdict.reason") or "unspecified")] += 1
        if when is not None and (is_request or denied):
            s.times.append((when, is_request and not denied, denied))
        subject = get(rec, "user.name")
        if isinstance(subject, str) and (is_request or denied):
            s.subjects[subject] += 1
            if denied:
                s.subjects_denied[subject] += 1
        target = get(rec, "guard.target.name")
        if isinstance(target, str) and (is_request or denied):
            s.targets[target] += 1
            if denied:
                s.targets_denied[target] += 1
        for finding in get(rec, "guard.pii.findings") or []:
            if isinstance(finding, dict):
                found = finding.get("count")
                count = found if isinstance(found, int) else 1
                s.pii[str(finding.get("entity_type"))][str(finding.get("action"))] += count
                s.pii_findings += count
    return s


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _bucket_size(span: float) -> int:
    for size in _BUCKETS:
        if span / size <= 48:
            return size
    return _BUCKETS[-1]


def _label(epoch: float, size: int) -> str:
    stamp = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return stamp.strftime("%m-%d" if size >= 86400 else "%m-%d %H:%M")


def timeline_svg(times: Sequence[tuple[float, bool, bool]], since: float | None, until: float | None,
                 width: int = 1080, height: int = 240) -> str:
    """Stacked bars per time bucket: allowed requests and denials."""
    if not times:
        return '<p class="muted">No requests in this period.</p>'
    start = since if since is not None else min(t for t, _, _ in times)
    end = until if until is not None else max(t for t, _, _ in times)
    size = _bucket_size(max(1.0, end - start))
    start = start - (start % size)
    count = int((end - start) // size) + 1
    allowed = [0] * count
    denied = [0] * count
    for when, ok, no in times:
        i = int((when - start) // size)
        if 0 <= i < count:
            allowed[i] += ok
            denied[i] += no
    peak = max(1, max(a + d for a, d in zip(allowed, denied, strict=True)))
    left, bottom, top = 44, 28, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    bar_w = plot_w / count
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="Requests and denials over time">']
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#eceff3"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{peak * frac:g}</text>')
    for i in range(count):
        x = left + i * bar_w + bar_w * 0.1
        w = max(1.0, bar_w * 0.8)
        ha = plot_h * allowed[i] / peak
        hd = plot_h * denied[i] / peak
        base = top + plot_h
        tip = f"{_label(start + i * size, size)}: {allowed[i]} allowed, {denied[i]} denied"
        if ha:
            parts.append(f'<rect x="{x:.1f}" y="{base - ha:.1f}" width="{w:.1f}" height="{ha:.1f}" '
                         f'fill="{ALLOWED_COLOR}"><title>{_e(tip)}</title></rect>')
        if hd:
            parts.append(f'<rect x="{x:.1f}" y="{base - ha - hd:.1f}" width="{w:.1f}" height="{hd:.1f}" '
                         f'fill="{DENIED_COLOR}"><title>{_e(tip)}</title></rect>')
    step = max(1, count // 8)
    for i in range(0, count, step):
        x = left + i * bar_w + bar_w / 2
        parts.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">'
                     f'{_e(_label(start + i * size, size))}</text>')
    parts.append("</svg>")
    bucket = f"{size // 86400} d" if size >= 86400 else f"{size // 3600} h" if size >= 3600 else f"{size // 60} min"
    legend = (f'<div class="legend"><span><i style="background:{ALLOWED_COLOR}"></i>allowed requests</span>'
              f'<span><i style="background:{DENIED_COLOR}"></i>denied</span>'
              f'<span>bucket: {bucket} (UTC)</span></div>')
    return legend + "".join(parts)


def hbar_svg(items: Sequence[tuple[str, int, int]], width: int = 520) -> str:
    """Horizontal bars: label, total, denied part (drawn in red)."""
    if not items:
        return '<p class="muted">None in this period.</p>'
    row_h, label_w = 22, 180
    height = row_h * len(items) + 6
    peak = max(1, max(total for _, total, _ in items))
    bar_max = width - label_w - 120
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" '
             f'viewBox="0 0 {width} {height}" role="img">']
    for i, (label, total, denied) in enumerate(items):
        y = i * row_h + 4
        shown = label if len(label) <= 28 else label[:27] + "…"
        wt = bar_max * total / peak
        wd = bar_max * denied / peak
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_e(shown)}'
                     f'<title>{_e(label)}</title></text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{max(1.0, wt):.1f}" height="16" fill="{ALLOWED_COLOR}"/>')
        if denied:
            parts.append(f'<rect x="{label_w}" y="{y}" width="{max(1.0, wd):.1f}" height="16" '
                         f'fill="{DENIED_COLOR}"/>')
        parts.append(f'<text x="{label_w + wt + 6:.1f}" y="{y + 13}">{total}'
                     f'{f" ({denied} denied)" if denied else ""}</text>')
    parts.append("</svg>")
    return "".join(parts)


def pii_svg(pii: dict[str, Counter[str]], actions: Sequence[str], width: int = 1080) -> str:
    """Horizontal stacked bars: findings per entity type, split by action."""
    if not pii:
        return '<p class="muted">No PII findings in this period.</p>'
    colors = {a: PII_COLORS[i % len(PII_COLORS)] for i, a in enumerate(actions)}
    rows = sorted(pii.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:15]
    row_h, label_w = 22, 200
    height = row_h * len(rows) + 6
    peak = max(1, max(sum(c.values()) for _, c in rows))
    bar_max = width - label_w - 70
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="100%" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="PII findings by entity type">']
    for i, (entity, counts) in enumerate(rows):
        y = i * row_h + 4
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_e(entity)}</text>')
        x = float(label_w)
        for action in actions:
            n = counts.get(action, 0)
            if not n:
                continue
            w = max(1.0, bar_max * n / peak)
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="16" fill="{colors[action]}">'
                         f'<title>{_e(entity)} / {_e(action)}: {n}</title></rect>')
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 13}">{sum(counts.values())}</text>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{colors[a]}"></i>{_e(a)}</span>' for a in actions)
    return f'<div class="legend">{legend}</div>' + "".join(parts)


def _pii_table(pii: dict[str, Counter[str]], actions: Sequence[str]) -> str:
    if not pii:
        return ""
    head = "".join(f'<th class="n">{_e(a)}</th>' for a in actions)
    body = []
    for entity, counts in sorted(pii.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
        cells = "".join(f'<td class="n">{counts.get(a, 0)}</td>' for a in actions)
        body.append(f"<tr><td>{_e(entity)}</td>{cells}<td class=\"n\">{sum(counts.values())}</td></tr>")
    return (f'<table><tr><th>Entity type</th>{head}<th class="n">Total</th></tr>{"".join(body)}</table>')


def _status_label(status: str) -> str:
    return "IN FLIGHT AT CRASH" if status == "in_flight" else status.upper()


def _top(counter: Counter[str], denied: Counter[str], n: int = 10) -> list[tuple[str, int, int]]:
    return [(k, v, denied.get(k, 0)) for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def render(paths: Sequence[str | Path], *, since: float | None = None, until: float | None = None,
           keys: Iterable[VerifyKey] = (), checkpoint_files: Iterable[str | Path] = (),
           now: float, title: str = "guard audit report", subject: str | None = None,
           server: str | None = None) -> str:
    """The whole report as one HTML document (``subject``/``server``: only their records, globs allowed)."""
    keys = list(keys)
    filters = query.Filters(since=since, until=until, subject=subject, server=server, include_internal=True)
    who = sections.WhoDidWhat()
    stats = _collect(query.select(paths, filters), who)
    fleet = verify_fleet(paths, keys=keys, checkpoint_files=checkpoint_files)
    scope = " &middot; ".join(f"{k} {_e(v)}" for k, v in (("subject", subject), ("server", server)) if v)
    actions = sorted({a for c in stats.pii.values() for a in c})
    first = since if since is not None else stats.first
    last = until if until is not None else stats.last
    period_from = rfc3339(first) if first is not None else "-"
    period_to = rfc3339(last) if last is not None else "-"
    cards = [
        ("Events", stats.records), ("Requests", stats.requests), ("Denied", stats.denied),
        ("Auth failures", stats.auth_failures), ("Sessions", len(stats.sessions)),
        ("PII findings", stats.pii_findings),
    ]
    reasons = "".join(f'<tr><td>{_e(r)}</td><td class="n">{n}</td></tr>' for r, n in stats.reasons.most_common(10))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{_e(title)}</h1>
<div class="sub">Period {_e(period_from)} &ndash; {_e(period_to)} (UTC) &middot; generated {_e(rfc3339(now))} by guard
{_e(__version__)} &middot; {sum(len(c.result.files) for c in fleet.chains)} file(s) in {len(fleet.chains)} chain(s)
{f"&middot; only {scope}" if scope else ""}</div>
<nav><a href="#integrity">Integrity</a><a href="#denials">Denials</a><a href="#subjects">By subject</a>
<a href="#servers">By server</a><a href="#policy-history">Policy history</a></nav>
<div class="cards">{"".join(f'<div class="card"><b>{v}</b><span>{_e(k)}</span></div>' for k, v in cards)}</div>
<section id="integrity"><h2>Integrity <span class="badge {fleet.status}">{_e(_status_label(fleet.status))}</span></h2>
{sections.proves_paragraph(fleet)}{sections.keys_section(who, keys)}{sections.chains_section(fleet)}</section>
<section><h2>Requests and denials over time</h2>{timeline_svg(stats.times, since, until)}</section>
<div class="two">
<section><h2>Top subjects</h2>{hbar_svg(_top(stats.subjects, stats.subjects_denied))}</section>
<section><h2>Top tools and resources</h2>{hbar_svg(_top(stats.targets, stats.targets_denied))}</section>
</div>
<section><h2>PII findings by entity type and action</h2>{pii_svg(stats.pii, actions)}
{_pii_table(stats.pii, actions)}</section>
<section><h2>Top denial reasons</h2>{f'<table><tr><th>Reason</th><th class="n">Count</th></tr>{reasons}</table>'
    if reasons else '<p class="muted">No denials in this period.</p>'}</section>
{sections.denials_section(who)}
{sections.subject_view(who)}
{sections.server_view(who)}
{sections.policy_section(who)}
</main></body></html>
"""

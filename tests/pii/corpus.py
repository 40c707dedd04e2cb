"""The labelled PII corpus (``corpus.jsonl``, written by ``corpus_gen.py``) and how it is scored.

Shared by ``tests/pii/test_corpus.py`` and ``bench/pii_bench.py --accuracy``.

A labelled value **leaks** when, after protection, it can still be read anywhere in the
message the receiver gets: in any string, object key or number, after undoing every
encoding a reader could undo (embedded JSON, JSON escapes, HTML entities, percent escapes,
base64 runs, Unicode compatibility forms, digits of other scripts, invisible characters),
and across adjacent text blocks read together. This reader is written independently of
guard's own normalization (stdlib only), so a form guard fails to decode counts as a leak.
A rejected message leaks nothing. A PII-free document is **altered** when guard changes or
rejects it. The baseline is plain Presidio (``AnalyzerEngine.analyze``, threshold 0, the
same recognizers) on every string leaf of the message, each finding redacted.
"""

from __future__ import annotations

import base64
import binascii
import copy
import html
import json
import re
import unicodedata
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.jsonrpc import Kind
from guard.pii.protect import Protector
from guard.pii.rules import PIIRules

CORPUS = Path(__file__).with_name("corpus.jsonl")
KINDS = {"request": Kind.REQUEST, "result": Kind.RESULT, "error": Kind.ERROR, "notification": Kind.NOTIFICATION}
NAMES = frozenset({"PERSON"})
"""Entity types excluded from the leak target (found only with an NER model)."""


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- an independent reader --------------------------------------------------------------------

_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_JSON_ESCAPE = re.compile(r"\\+u([0-9a-fA-F]{4})")


def canonical(s: str) -> str:
    """What a reader sees: NFKC, every decimal digit as ASCII, no format (Cf) characters."""
    out = []
    for ch in unicodedata.normalize("NFKC", s):
        if unicodedata.category(ch) == "Cf":
            continue
        digit = unicodedata.decimal(ch, None)
        out.append(str(digit) if digit is not None else ch)
    return "".join(out)


def _decodings(s: str, depth: int = 0) -> Iterator[str]:
    yield s
    if depth > 3:
        return
    seen = {s}
    for decoded in (html.unescape(s), urllib.parse.unquote(s),
                    _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), s).replace('\\"', '"')):
        if decoded not in seen:
            seen.add(decoded)
            yield from _decodings(decoded, depth + 1)
    for m in _B64_RUN.finditer(s):
        run = m.group(0)
        try:
            raw = base64.b64decode(run + "=" * (-len(run) % 4), altchars=b"-_" if "-" in run or "_" in run else None)
            text = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if text.isprintable() or all(c.isprintable() or c in "\n\r\t" for c in text):
            yield from _decodings(text, depth + 1)
    body = s.strip()
    if body[:1] in "[{" and body[-1:] in "]}":
        try:
            pairs = json.loads(body, object_pairs_hook=lambda kv: kv)
        except ValueError:
            return
        for piece in readable(pairs):
            yield from _decodings(piece, depth + 1)


def readable(value: Any) -> Iterator[str]:
    """Every string, key and number in a JSON value (object pairs included, duplicates too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield str(value)
    elif isinstance(value, dict):
        for k, child in value.items():
            yield k
            yield from readable(child)
        blocks = value.get("content")
        if isinstance(blocks, list):  # adjacent text blocks, read together
            texts = [b.get("text") for b in blocks if isinstance(b, dict)]
            if len(texts) > 1 and all(isinstance(t, str) for t in texts):
                yield "".join(texts)
    elif isinstance(value, list):
        if all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in value) and value:
            for k, child in value:  # object_pairs_hook output
                yield k
                yield from readable(child)
            return
        for child in value:
            yield from readable(child)


def haystack(payload: Any) -> list[str]:
    return [canonical(d) for s in readable(payload) for d in _decodings(s)]


def leaked(value: str, stack: list[str]) -> bool:
    needle = canonical(value)
    return any(needle in s for s in stack)


# -- shape ---------------------------------------------------------------------------------------


def same_shape(before: Any, after: Any) -> bool:
    """Same containers, lengths and key counts; a leaf may only change str->str or number->str."""
    if isinstance(before, dict):
        return isinstance(after, dict) and len(before) == len(after) and all(
            same_shape(b, a) for b, a in zip(before.values(), after.values(), strict=True))
    if isinstance(before, list):
        return isinstance(after, list) and len(before) == len(after) and all(
            same_shape(b, a) for b, a in zip(before, after, strict=True))
    if isinstance(before, str):
        return isinstance(after, str)
    if isinstance(before, int | float) and not isinstance(before, bool):
        return isinstance(after, int | float | str) and not isinstance(after, bool)
    return type(before) is type(after) and before == after


# -- scoring -------------------------------------------------------------------------------------


@dataclass
class Score:
    labels: Counter[str] = field(default_factory=Counter)
    leaks: Counter[str] = field(default_factory=Counter)
    by_form: Counter[str] = field(default_factory=Counter)
    form_leaks: Counter[str] = field(default_factory=Counter)
    by_place: Counter[str] = field(default_factory=Counter)
    place_leaks: Counter[str] = field(default_factory=Counter)
    pii_free: int = 0
    altered: list[str] = field(default_factory=list)
    misses: list[tuple[str, str, str]] = field(default_factory=list)
    bad_shape: list[str] = field(default_factory=list)

    def leak_rate(self, entities: Callable[[str], bool] = lambda e: e not in NAMES) -> float:
        total = sum(n for e, n in self.labels.items() if entities(e))
        return sum(n for e, n in self.leaks.items() if entities(e)) / total if total else 0.0

    def recall_of(self, entity: str) -> float:
        """Share of ``entity``'s labelled values that did not leak."""
        n = self.labels[entity]
        return 1 - self.leaks[entity] / n if n else 1.0

    def evasion_leak_rate(self) -> float:
        total = sum(n for f, n in self.by_form.items() if f != "plain")
        return sum(n for f, n in self.form_leaks.items() if f != "plain") / total if total else 0.0

    @property
    def altered_rate(self) -> float:
        return len(self.altered) / self.pii_free if self.pii_free else 0.0


Protect = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, bool]]
"""``protect(record) -> (payload the receiver gets or None when unchanged, rejected)``."""


def guard_protect(protector: Protector) -> Protect:
    def protect(record: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        outcome = protector.protect(record["message"], KINDS[record["kind"]], record["method"],
                                    record["direction"] == "to_client", "demo", record["tool"])
        return outcome.payload, outcome.rejection is not None
    return protect


def presidio_protect(engine: Any) -> Protect:
    """Plain Presidio on every string leaf (threshold 0), each finding redacted."""
    def redact(value: Any) -> Any:
        if isinstance(value, str):
            results = engine.analyze(text=value, language="en")
            if not results:
                return value
            out = value
            for r in sorted(results, key=lambda r: r.start, reverse=True):
                out = out[:r.start] + f"<{r.entity_type}>" + out[r.end:]
            return out
        if isinstance(value, list):
            return [redact(v) for v in value]
        if isinstance(value, dict):
            return {k: redact(v) for k, v in value.items()}
        return value

    def protect(record: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        message = copy.deepcopy(record["message"])
        out = redact(message)
        return (None if out == record["message"] else out), False
    return protect


def _protected(rules: PIIRules | None, record: dict[str, Any], entity: str) -> bool:
    """Whether the rules mean to protect ``entity`` in this record's direction (else it is not a leak)."""
    if rules is None:
        return True
    policy = rules.resolve(entity, "demo", record["tool"])
    action = policy.to_client if record["direction"] == "to_client" else policy.to_server
    return not action.is_allow


def evaluate(protect: Protect, records: list[dict[str, Any]] | None = None, counts: PIIRules | None = None) -> Score:
    """Score ``protect`` on the corpus; with ``counts``, values those rules allow through are not labels."""
    score = Score()
    for rec in records if records is not None else load_corpus():
        payload, rejected = protect(rec)
        received = None if rejected else (rec["message"] if payload is None else payload)
        if rec["pii_free"]:
            score.pii_free += 1
            if rejected or payload is not None:
                score.altered.append(rec["name"])
        if received is not None:
            serialized = json.loads(json.dumps(received))  # must be valid JSON
            if not same_shape(rec["message"], serialized):
                score.bad_shape.append(rec["name"])
        stack = haystack(received) if received is not None else []
        for label in rec["labels"]:
            entity = label["entity"]
            if not _protected(counts, rec, entity):
                continue
            score.labels[entity] += 1
            named = entity in NAMES  # forms and places are scored without names
            if not named:
                score.by_form[rec["form"]] += 1
                if "place" in rec:
                    score.by_place[rec["place"]] += 1
            if received is not None and leaked(label["value"], stack):
                score.leaks[entity] += 1
                if not named:
                    score.form_leaks[rec["form"]] += 1
                    if "place" in rec:
                        score.place_leaks[rec["place"]] += 1
                score.misses.append((rec["name"], entity, label["value"]))
    return score


TARGETS = {"leak": 0.005, "evasion": 0.10, "altered": 0.10}
"""Issue 13: leaks <= 0.5% of labelled values (names excluded) and none on structural places,
evasion forms <= 10%, PII-free documents altered <= 10%, output always valid JSON of the same shape."""


def targets_hold(score: Score) -> bool:
    return (score.leak_rate() <= TARGETS["leak"] and score.evasion_leak_rate() <= TARGETS["evasion"]
            and score.altered_rate <= TARGETS["altered"] and not score.bad_shape
            and sum(score.place_leaks.values()) == 0)


def table(guard: Score, plain: Score | None = None) -> str:
    """The per-entity table printed by ``bench/pii_bench.py --accuracy``."""
    head = f"{'entity':20} {'labels':>6} {'guard leaks':>11} {'rate':>7}"
    if plain is not None:
        head += f" {'plain Presidio':>14} {'rate':>7}"
    lines = [head]

    def row(name: str, n: int, leaks: int, base: int | None) -> str:
        line = f"{name:20} {n:>6} {leaks:>11} {leaks / n if n else 0:>7.1%}"
        if base is not None:
            line += f" {base:>14} {base / n if n else 0:>7.1%}"
        return line

    for e in sorted(guard.labels):
        lines.append(row(e, guard.labels[e], guard.leaks[e], plain.leaks[e] if plain else None))
    total = sum(n for e, n in guard.labels.items() if e not in NAMES)
    lines.append(row("all but names", total, sum(n for e, n in guard.leaks.items() if e not in NAMES),
                     sum(n for e, n in plain.leaks.items() if e not in NAMES) if plain else None))
    lines.append("")
    lines.append(f"{'form':20} {'labels':>6} {'guard leaks':>11} {'rate':>7}")
    for f in sorted(guard.by_form):
        lines.append(row(f, guard.by_form[f], guard.form_leaks[f], plain.form_leaks[f] if plain else None))
    lines.append("")
    lines.append(f"{'structural place':36} {'labels':>6} {'guard leaks':>11}")
    for p in sorted(guard.by_place):
        lines.append(f"{p:36} {guard.by_place[p]:>6} {guard.place_leaks[p]:>11}")
    lines.append("")
    lines.append(f"PII-free documents altered: guard {len(guard.altered)}/{guard.pii_free} "
                 f"({guard.altered_rate:.1%})" + (f", plain Presidio {len(plain.altered)}/{plain.pii_free} "
                                                  f"({plain.altered_rate:.1%})" if plain else ""))
    lines.append(f"leak rate (names excluded): guard {guard.leak_rate():.2%}"
                 + (f", plain Presidio {plain.leak_rate():.2%}" if plain else "")
                 + f"; evasion forms: guard {guard.evasion_leak_rate():.1%}")
    lines.append(f"output not valid JSON of the same shape: {len(guard.bad_shape)}")
    return "\n".join(lines)

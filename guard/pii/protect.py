"""Find and protect PII in one MCP payload: the synchronous core the pipeline stage runs.

Two steps, so that the stage can ask the authorizer about reveals in between:

1. :meth:`Protector.scan` is :meth:`~Protector.collect` (walk the payload,
   :mod:`guard.pii.walker`, and build what to analyse), the analysis (here, or in analyzer
   processes, :mod:`guard.pii.pool`) and :meth:`~Protector.plan` (decide which detections
   to protect, resolve rules, open tokens the client sent back).
2. :meth:`Protector.apply` gets the reveal decisions per entity type and produces the
   rewritten payload, the findings for audit (never values), or a rejection.

What is analysed for each candidate :class:`~guard.pii.walker.Leaf`: its normalized view
(:mod:`guard.pii.normalize`) and, when normalization changed it, the original too (so
guard finds at least what plain Presidio finds on the original); for adjacent text blocks
of one ``content`` list, the seam between each two (the end of one and the start of the
next), so a value split across them is found; each block is then rewritten in place.

Which detections are protected (:meth:`Protector._decide`), "validators over thresholds":

* a score at or above the rule's ``threshold`` (Presidio's score, context words included);
* or a label naming the type: the JSON key, the column header, ``label:`` on the line
  (:mod:`guard.pii.evidence`);
* or a match its type's validator accepts (:mod:`guard.pii.validators`: Luhn, IBAN
  mod-97, SSN rules, IP parsing, e-mail syntax...), unless ``protect_validated = false``
  for it, or the labels say it is machine data (``version``, ``order``...) and the
  validator is not a checksum strong enough to overrule them.

Every protected value is rewritten in the original text, over the original span of what
was detected in the view. Within one message equal values get equal replacements (even
with ``encrypt``), so ``structuredContent`` and its text copy stay alike.

When two findings overlap, a protective action beats ``allow``, then the longer span, then
the higher score. Findings on top of a token are dropped: a restored value was already
authorized, and re-protecting it would undo the reveal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guard.context import Finding, Principal
from guard.crypto.aead import InvalidField, KeyRing, RandomSource
from guard.jsonrpc import ErrorCode, Kind
from guard.pii import validators
from guard.pii.analysis import Detection, Item, TextAnalyzer, analyze_items
from guard.pii.evidence import evidence, words
from guard.pii.normalize import View, normalize
from guard.pii.rules import ActionSpec, PIIRules
from guard.pii.tokens import TOKEN_LIKE_RE, Binding, apply_action, binding_for, open_token
from guard.pii.walker import Leaf, Shape, rewrite, walk

if TYPE_CHECKING:
    from guard.pii.engine import Analyzer

SEAM = 48
"""Characters on each side of a boundary between adjacent text blocks that are analysed together."""
TARGET_PATH = "$target"
"""Path of the message's target (resource URI, tool or prompt name) in findings."""


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity: str
    score: float
    action: ActionSpec
    value: str
    """The normalized value (what the action protects)."""
    part: int = 0
    """0: the whole value is in this leaf; 1/2: first/second piece of a value split over two blocks."""
    cut: int = 0
    """For a split value: how many characters of ``value`` are in the first piece."""


@dataclass(frozen=True)
class TokenRef:
    start: int
    end: int
    entity: str
    original: str | None
    """The opened value; ``None`` when the token is invalid."""


@dataclass
class LeafPlan:
    path: str
    text: str
    spans: list[Span] = field(default_factory=list)
    tokens: list[TokenRef] = field(default_factory=list)


@dataclass(frozen=True)
class Rejection:
    code: ErrorCode
    message: str
    reason: str


@dataclass
class Scan:
    """What :meth:`Protector.scan` found; feed it to :meth:`Protector.apply`."""

    payload: dict[str, Any]
    kind: Kind
    method: str | None
    to_client: bool
    server: str
    tool: str | None
    binding: Binding
    leaves: dict[int, LeafPlan] = field(default_factory=dict)
    """Leaves with findings or tokens, by visiting position."""
    leaf_count: int = 0
    shape: Shape = field(default_factory=list)
    """Where each subtree of ``payload`` ends (:func:`~guard.pii.walker.walk`), for the rewrite."""
    target: LeafPlan | None = None
    """The message's target with its findings (audit records the protected form)."""

    @property
    def reveal_entities(self) -> frozenset[str]:
        """Entity types of valid tokens: ask the authorizer about each."""
        return frozenset(t.entity for leaf in self.leaves.values() for t in leaf.tokens if t.original is not None)

    @property
    def needs_apply(self) -> bool:
        return any(leaf.tokens or any(not s.action.is_allow for s in leaf.spans) for leaf in self.leaves.values())


@dataclass(frozen=True)
class Seam:
    first: int
    """Leaf position of the earlier block; the later one is the next leaf of the same group."""
    second: int
    tail: int
    """How many characters of the first block's view start the seam text."""
    item: int


@dataclass
class Collected:
    """What :meth:`Protector.collect` found to analyze in one payload."""

    scan: Scan
    leaves: list[Leaf]
    """Every candidate, in visiting order."""
    views: list[View]
    items: list[Item]
    """The distinct (string, context words) pairs to analyze."""
    index: list[tuple[int, int | None]]
    """For each leaf: the item of its view, and of its original text when the view differs."""
    seams: list[Seam] = field(default_factory=list)
    target: tuple[str, View, int] | None = None
    """The target text, its view and its item."""


@dataclass
class Outcome:
    payload: dict[str, Any] | None
    """The rewritten payload, or ``None`` when nothing changed (or rejected)."""
    findings: list[Finding]
    rejection: Rejection | None = None
    target: str | None = None
    """The target as audit may record it (protected), when a target was given."""


BLOCKED = Rejection(ErrorCode.PII_BLOCKED, "Message blocked: it contains protected data", "pii_blocked")
REVEAL_DENIED = Rejection(ErrorCode.PII_BLOCKED, "Not allowed to use this protected value here",
                          "pii_reveal_denied")
TOKEN_INVALID = Rejection(ErrorCode.PII_TOKEN_INVALID, "Invalid protected-value token", "pii_token_invalid")
_REDACT = ActionSpec("redact")


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


class Protector:
    """Scans and rewrites payloads. Thread-safe; holds no per-message state."""

    def __init__(self, analyzer: Analyzer | TextAnalyzer | None, rules: PIIRules, keyring: KeyRing | None,
                 deployment_id: str, bind_tenant: bool = False, random: RandomSource = os.urandom,
                 bind_principal: bool = False) -> None:
        """``analyzer`` may be ``None`` when analysis runs elsewhere (then only
        :meth:`collect`, :meth:`plan` and :meth:`apply` are used). ``bind_principal`` binds
        tokens to the principal passed to :meth:`collect` (the ``[pii]`` setting defaults to on)."""
        if keyring is None and rules.uses_keys():
            raise ValueError("the PII rules use hash/encrypt/tokenize but no key ring is configured")
        self.analyzer = analyzer
        self.rules = rules
        self.keyring = keyring
        self.deployment_id = deployment_id
        self.bind_tenant = bind_tenant
        self.bind_principal = bind_principal
        self._random = random
        self._custom_context = {r.entity: frozenset(w.lower() for w in r.context) for r in rules.recognizers}
        for entity, words_ in rules.context.items():
            self._custom_context[entity] = self._custom_context.get(entity, frozenset()) | frozenset(words_)

    def binding(self, tenant: str | None, principal: Principal | None = None) -> Binding:
        if principal is not None:
            return binding_for(self.deployment_id, principal, bind_tenant=self.bind_tenant,
                               bind_principal=self.bind_principal)
        return Binding(self.deployment_id, tenant if self.bind_tenant else None)

    @staticmethod
    def applies(kind: Kind, method: str | None, to_client: bool) -> bool:
        """Whether a message of this shape is scanned at all: every message is (issue 13)."""
        return True

    def scan(self, payload: dict[str, Any], kind: Kind, method: str | None, to_client: bool, server: str,
             tool: str | None, tenant: str | None = None, target: str | None = None,
             principal: Principal | None = None) -> Scan:
        """Walk, analyze (with this protector's analyzer, in this thread) and plan."""
        if self.analyzer is None:
            raise ValueError("this protector has no analyzer: use collect/plan with an analysis pool")
        collected = self.collect(payload, kind, method, to_client, server, tool, tenant, target, principal)
        return self.plan(collected, analyze_items(self.analyzer, collected.items))

    # -- collect ------------------------------------------------------------------------------

    def collect(self, payload: dict[str, Any], kind: Kind, method: str | None, to_client: bool, server: str,
                tool: str | None, tenant: str | None = None, target: str | None = None,
                principal: Principal | None = None) -> Collected:
        """The candidates of ``payload`` and the distinct items to analyze (raises ``Unscannable``).

        Tokens are minted and opened under :meth:`binding` for ``principal`` (its tenant and,
        with ``bind_principal``, its issuer and subject); without one, under ``tenant``."""
        scan = Scan(payload, kind, method, to_client, server, tool, self.binding(tenant, principal))
        leaves: list[Leaf] = []

        def visit(leaf: Leaf) -> None:
            leaves.append(leaf)

        scan.shape = walk(payload, visit, self.rules.scan_blobs)
        scan.leaf_count = len(leaves)
        items: list[Item] = []
        positions: dict[Item, int] = {}

        def item_of(text: str, context: tuple[str, ...]) -> int:
            item = (text, context)
            position = positions.get(item)
            if position is None:
                position = positions[item] = len(items)
                items.append(item)
            return position

        views: list[View] = []
        index: list[tuple[int, int | None]] = []
        for leaf in leaves:
            context = words(leaf.key) if leaf.key else ()
            if leaf.kind != "number":
                view = normalize(leaf.text)
            elif len(leaf.text) >= 10 and leaf.text.isdigit() and _names_phone(context):
                view = _international(leaf.text)  # a phone stored as a number loses its "+"
            else:
                view = View(leaf.text, leaf.text)
            views.append(view)
            index.append((item_of(view.text, context), None if view.identity else item_of(leaf.text, context)))
        seams: list[Seam] = []
        last: dict[int, int] = {}
        for position, leaf in enumerate(leaves):
            if leaf.block is None:
                continue
            previous = last.get(leaf.block)
            last[leaf.block] = position
            if previous is None:
                continue
            head, tail = views[previous].text[-SEAM:], views[position].text[:SEAM]
            if head and tail:
                seams.append(Seam(previous, position, len(head), item_of(head + tail, ())))
        collected = Collected(scan, leaves, views, items, index, seams)
        if target:
            view = normalize(target)
            collected.target = (target, view, item_of(view.text, ()))
        return collected

    # -- plan ---------------------------------------------------------------------------------

    def plan(self, collected: Collected, detections: list[list[Detection]]) -> Scan:
        """The scan: detections decided and rules resolved (one list per item), tokens opened."""
        if len(detections) != len(collected.items):
            raise ValueError("one list of detections per item is required")
        scan = collected.scan
        found: dict[int, list[Span]] = {}
        for position, (leaf, view, (normal, original)) in enumerate(
                zip(collected.leaves, collected.views, collected.index, strict=True)):
            spans = self._leaf_spans(leaf, view, detections[normal], scan, directional=True)
            if original is not None:
                spans += self._original_spans(leaf, detections[original], scan)
            if spans:
                found[position] = spans
        for seam in collected.seams:
            for first, second in self._seam_spans(collected, seam, detections[seam.item], scan):
                found.setdefault(seam.first, []).append(first)
                found.setdefault(seam.second, []).append(second)
        for position, leaf in enumerate(collected.leaves):
            tokens = self._tokens(leaf.text, scan.binding) if not scan.to_client and leaf.kind != "number" else []
            spans = found.get(position, [])
            chosen = self._choose(spans, tokens) if spans else []
            if chosen or tokens:
                scan.leaves[position] = LeafPlan(leaf.path, leaf.text, chosen, tokens)
        if collected.target is not None:
            text, view, item = collected.target
            leaf = Leaf(text, TARGET_PATH, None)
            spans = self._leaf_spans(leaf, view, detections[item], scan, directional=False)
            scan.target = LeafPlan(TARGET_PATH, text, self._choose(spans, []))
        return scan

    def _action(self, entity: str, scan: Scan, directional: bool) -> ActionSpec:
        policy = self.rules.resolve(entity, scan.server, scan.tool)
        if directional:
            return policy.to_client if scan.to_client else policy.to_server
        # Audit targets: the protected form shown outside the trust boundary; a value the
        # rules would pass or block has no such form and is redacted (audit holds no PII).
        action = policy.to_client
        return _REDACT if action.kind in ("allow", "block") else action

    def _decide(self, entity: str, score: float, value: str, key_words: tuple[str, ...], text: str,
                start: int, scan: Scan) -> bool:
        policy = self.rules.resolve(entity, scan.server, scan.tool)
        if score >= policy.threshold:
            return True
        found = evidence(entity, key_words, text, start, self._custom_context.get(entity, frozenset()))
        if found.positive:
            return True
        if not policy.protect_validated or not validators.validate(entity, value):
            return False
        return entity in validators.STRONG or not found.negative

    def _leaf_spans(self, leaf: Leaf, view: View, results: list[Detection], scan: Scan,
                    directional: bool) -> list[Span]:
        out: list[Span] = []
        key_words = words(leaf.key) if leaf.key else ()
        for r in results:
            if r.end <= r.start:
                continue
            value = view.text[r.start:r.end]
            if not self._decide(r.entity_type, r.score, value, key_words, view.text, r.start, scan):
                continue
            start, end = view.span(r.start, r.end)
            out.append(Span(start, end, r.entity_type, float(r.score), self._action(r.entity_type, scan, directional),
                            value))
        return out

    def _original_spans(self, leaf: Leaf, results: list[Detection], scan: Scan) -> list[Span]:
        out: list[Span] = []
        key_words = words(leaf.key) if leaf.key else ()
        for r in results:
            if r.end <= r.start:
                continue
            value = normalize(leaf.text[r.start:r.end]).text
            if not self._decide(r.entity_type, r.score, value, key_words, leaf.text, r.start, scan):
                continue
            out.append(Span(r.start, r.end, r.entity_type, float(r.score), self._action(r.entity_type, scan, True),
                            value))
        return out

    def _seam_spans(self, collected: Collected, seam: Seam, results: list[Detection],
                    scan: Scan) -> list[tuple[Span, Span]]:
        out: list[tuple[Span, Span]] = []
        first, second = collected.views[seam.first], collected.views[seam.second]
        head = first.text[-seam.tail:]
        text = head + second.text[:SEAM]
        offset = len(first.text) - seam.tail
        key = collected.leaves[seam.first].key
        for r in results:
            if not r.start < seam.tail < r.end:
                continue  # wholly inside one block: found there already
            value = text[r.start:r.end]
            if not self._decide(r.entity_type, r.score, value, words(key) if key else (), text, r.start, scan):
                continue
            action = self._action(r.entity_type, scan, True)
            a_start, a_end = first.span(offset + r.start, len(first.text))
            b_start, b_end = second.span(0, r.end - seam.tail)
            cut = seam.tail - r.start
            out.append((Span(a_start, a_end, r.entity_type, float(r.score), action, value, 1, cut),
                        Span(b_start, b_end, r.entity_type, float(r.score), action, value, 2, cut)))
        return out

    @staticmethod
    def _choose(spans: list[Span], tokens: list[TokenRef]) -> list[Span]:
        candidates = [s for s in spans if not any(_overlaps((s.start, s.end), (t.start, t.end)) for t in tokens)]
        candidates.sort(key=lambda s: (s.action.is_allow, -(s.end - s.start), -s.score, s.start, s.part))
        chosen: list[Span] = []
        for s in candidates:
            if not any(_overlaps((s.start, s.end), (c.start, c.end)) for c in chosen):
                chosen.append(s)
        chosen.sort(key=lambda s: s.start)
        return chosen

    def _tokens(self, text: str, binding: Binding) -> list[TokenRef]:
        if "<pii:" not in text:
            return []
        refs: list[TokenRef] = []
        for m in TOKEN_LIKE_RE.finditer(text):
            try:
                if self.keyring is None:
                    raise InvalidField("no key ring")
                entity, original = open_token(self.keyring, binding, m.group(0))
                refs.append(TokenRef(m.start(), m.end(), entity, original))
            except InvalidField:
                refs.append(TokenRef(m.start(), m.end(), _claimed_entity(m.group(0)), None))
        return refs

    # -- apply --------------------------------------------------------------------------------

    def apply(self, scan: Scan, reveal: Mapping[str, bool]) -> Outcome:
        findings: list[Finding] = []
        rejection: Rejection | None = None
        edits: dict[int, str] = {}
        memo: dict[tuple[str, ActionSpec, str], str] = {}

        def protect(span: Span) -> str:
            key = (span.entity, span.action, span.value)
            replacement = memo.get(key)
            if replacement is None:
                replacement = memo[key] = apply_action(span.action, span.entity, span.value, self.keyring,
                                                       scan.binding, self._random)
            if span.part == 0:
                return replacement
            if len(replacement) == len(span.value):  # a mask: each piece keeps its own characters
                return replacement[:span.cut] if span.part == 1 else replacement[span.cut:]
            return replacement if span.part == 1 else ""

        for index, leaf in scan.leaves.items():
            pieces: list[tuple[int, int, str]] = []
            for t in leaf.tokens:
                if t.original is None:
                    findings.append(Finding(t.entity, leaf.path, "token_invalid", 1.0))
                    rejection = TOKEN_INVALID
                    continue
                if reveal.get(t.entity, False):
                    findings.append(Finding(t.entity, leaf.path, "reveal", 1.0))
                    pieces.append((t.start, t.end, t.original))
                    continue
                policy = self.rules.resolve(t.entity, scan.server, scan.tool)
                if policy.on_denied_reveal == "deny":
                    findings.append(Finding(t.entity, leaf.path, "reveal_denied", 1.0))
                    rejection = rejection or REVEAL_DENIED
                else:
                    findings.append(Finding(t.entity, leaf.path, "token_passed", 1.0))
            for s in leaf.spans:
                if s.part != 2:
                    findings.append(Finding(s.entity, leaf.path, s.action.kind, round(s.score, 4)))
                if s.action.kind == "block":
                    rejection = rejection or BLOCKED
                elif not s.action.is_allow and rejection is None:
                    pieces.append((s.start, s.end, protect(s)))
            if pieces and rejection is None:
                edits[index] = _splice(leaf.text, pieces)
        target = None
        if scan.target is not None:
            target = scan.target.text
            if scan.target.spans:
                target = _splice(target, [(s.start, s.end, protect(s)) for s in scan.target.spans
                                          if not s.action.is_allow])
                findings.extend(Finding(s.entity, TARGET_PATH, s.action.kind, round(s.score, 4))
                                for s in scan.target.spans)
        if rejection is not None:
            return Outcome(None, findings, rejection, target)
        if not edits:
            return Outcome(None, findings, None, target)
        return Outcome(rewrite(scan.payload, edits, scan.shape, self.rules.scan_blobs), findings, None, target)

    def protect(self, payload: dict[str, Any], kind: Kind, method: str | None, to_client: bool, server: str,
                tool: str | None, tenant: str | None = None,
                reveal: Mapping[str, bool] | None = None, target: str | None = None,
                principal: Principal | None = None) -> Outcome:
        """Scan and apply in one call (CLI, tests, benchmarks)."""
        scan = self.scan(payload, kind, method, to_client, server, tool, tenant, target, principal)
        return self.apply(scan, reveal or {})


def _names_phone(context: tuple[str, ...]) -> bool:
    return evidence("PHONE_NUMBER", context, "", 0).positive


def _international(digits: str) -> View:
    """``4915123457958`` read as ``+4915123457958`` (the ``+`` maps onto the first digit)."""
    starts = (0, *range(len(digits)))
    ends = (1, *range(1, len(digits) + 1))
    return View(digits, "+" + digits, starts, ends)


def _claimed_entity(token: str) -> str:
    parts = token[len("<pii:"):-1].split(":")
    name = parts[0] if parts else ""
    return name if name.isupper() and len(name) <= 64 and name.replace("_", "").isalnum() else "UNKNOWN"


def _splice(text: str, pieces: list[tuple[int, int, str]]) -> str:
    out: list[str] = []
    cursor = 0
    for start, end, replacement in sorted(pieces):
        if start < cursor:
            continue  # overlapping pieces (a token inside a protected span): the first wins
        out.append(text[cursor:start])
        out.append(replacement)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)

"""Find and protect PII in one MCP payload: the synchronous core the pipeline stage runs.

Two steps, so that the stage can ask the authorizer about reveals in between:

1. :meth:`Protector.scan` walks the payload (:mod:`guard.pii.walker`), analyzes every
   user-data string (:class:`~guard.pii.engine.Analyzer`), resolves the rule for each
   finding (:class:`~guard.pii.rules.PIIRules`) and, for client-to-server messages, opens
   every protected-value token (a token that does not open fails closed). It is
   :meth:`~Protector.collect` (the walk: which strings to analyze), the analysis, and
   :meth:`~Protector.plan` (rules and tokens), so that the analysis can run elsewhere
   (:mod:`guard.pii.pool`: analyzer processes) while the rest stays in guard's process.
2. :meth:`Protector.apply` gets the reveal decisions per entity type and produces the
   rewritten payload, the findings for audit (never values), or a rejection.

When two findings overlap, a protective action beats ``allow``, then the longer span, then
the higher score, so e.g. an e-mail inside an allowed URL is still protected. Findings on
top of a token are dropped: a restored value was already authorized, and re-protecting it
would undo the reveal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guard.context import Finding, Principal
from guard.crypto.aead import InvalidField, KeyRing, RandomSource
from guard.jsonrpc import ErrorCode, Kind
from guard.pii.analysis import Detection, Item, TextAnalyzer, analyze_items, context_words
from guard.pii.rules import ActionSpec, PIIRules
from guard.pii.tokens import TOKEN_LIKE_RE, Binding, apply_action, binding_for, open_token
from guard.pii.walker import has_user_data, transform

if TYPE_CHECKING:
    from guard.pii.engine import Analyzer


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity: str
    score: float
    action: ActionSpec


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

    @property
    def reveal_entities(self) -> frozenset[str]:
        """Entity types of valid tokens: ask the authorizer about each."""
        return frozenset(t.entity for leaf in self.leaves.values() for t in leaf.tokens if t.original is not None)

    @property
    def needs_apply(self) -> bool:
        return any(leaf.tokens or any(not s.action.is_allow for s in leaf.spans) for leaf in self.leaves.values())


@dataclass
class Collected:
    """What :meth:`Protector.collect` found to analyze in one payload."""

    scan: Scan
    leaves: list[tuple[str, str]]
    """Every user-data string and its JSON path, in visiting order."""
    items: list[Item]
    """The distinct (string, context words) pairs to analyze."""
    index: list[int]
    """For each leaf, the position of its item in ``items``."""


@dataclass
class Outcome:
    payload: dict[str, Any] | None
    """The rewritten payload, or ``None`` when nothing changed (or rejected)."""
    findings: list[Finding]
    rejection: Rejection | None = None


BLOCKED = Rejection(ErrorCode.PII_BLOCKED, "Message blocked: it contains protected data", "pii_blocked")
REVEAL_DENIED = Rejection(ErrorCode.PII_BLOCKED, "Not allowed to use this protected value here",
                          "pii_reveal_denied")
TOKEN_INVALID = Rejection(ErrorCode.PII_TOKEN_INVALID, "Invalid protected-value token", "pii_token_invalid")


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

    def binding(self, tenant: str | None, principal: Principal | None = None) -> Binding:
        if principal is not None:
            return binding_for(self.deployment_id, principal, bind_tenant=self.bind_tenant,
                               bind_principal=self.bind_principal)
        return Binding(self.deployment_id, tenant if self.bind_tenant else None)

    @staticmethod
    def applies(kind: Kind, method: str | None, to_client: bool) -> bool:
        """Whether a message of this shape is scanned at all (cheap; no walk)."""
        return has_user_data(kind, method, to_client)

    def scan(self, payload: dict[str, Any], kind: Kind, method: str | None, to_client: bool, server: str,
             tool: str | None, tenant: str | None = None, principal: Principal | None = None) -> Scan:
        """Walk, analyze (with this protector's analyzer, in this thread) and plan."""
        if self.analyzer is None:
            raise ValueError("this protector has no analyzer: use collect/plan with an analysis pool")
        collected = self.collect(payload, kind, method, to_client, server, tool, tenant, principal)
        return self.plan(collected, analyze_items(self.analyzer, collected.items))

    def collect(self, payload: dict[str, Any], kind: Kind, method: str | None, to_client: bool, server: str,
                tool: str | None, tenant: str | None = None, principal: Principal | None = None) -> Collected:
        """The user-data strings of ``payload`` and the distinct items to analyze.

        Tokens are minted and opened under :meth:`binding` for ``principal`` (its tenant and,
        with ``bind_principal``, its issuer and subject); without one, under ``tenant``."""
        scan = Scan(payload, kind, method, to_client, server, tool, self.binding(tenant, principal))
        leaves: list[tuple[str, str]] = []

        def visit(text: str, path: str) -> str:
            leaves.append((text, path))
            return text

        transform(payload, kind, method, to_client, visit, self.rules.scan_blobs)
        scan.leaf_count = len(leaves)
        items: list[Item] = []
        positions: dict[Item, int] = {}
        index: list[int] = []
        for text, path in leaves:
            item = (text, context_words(path))
            position = positions.get(item)
            if position is None:
                position = positions[item] = len(items)
                items.append(item)
            index.append(position)
        return Collected(scan, leaves, items, index)

    def plan(self, collected: Collected, detections: list[list[Detection]]) -> Scan:
        """The scan: rules resolved for ``detections`` (one list per item), tokens opened."""
        if len(detections) != len(collected.items):
            raise ValueError("one list of detections per item is required")
        scan = collected.scan
        for position, ((text, path), item) in enumerate(zip(collected.leaves, collected.index, strict=True)):
            tokens = self._tokens(text, scan.binding) if not scan.to_client else []
            results = detections[item]
            spans = self._spans(results, tokens, scan) if results else []
            if spans or tokens:
                scan.leaves[position] = LeafPlan(path, text, spans, tokens)
        return scan

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

    def _spans(self, results: list[Detection], tokens: list[TokenRef], scan: Scan) -> list[Span]:
        candidates: list[Span] = []
        for r in results:
            if any(_overlaps((r.start, r.end), (t.start, t.end)) for t in tokens):
                continue
            policy = self.rules.resolve(r.entity_type, scan.server, scan.tool)
            if r.score < policy.threshold:
                continue
            action = policy.to_client if scan.to_client else policy.to_server
            candidates.append(Span(r.start, r.end, r.entity_type, float(r.score), action))
        candidates.sort(key=lambda s: (s.action.is_allow, -(s.end - s.start), -s.score, s.start))
        chosen: list[Span] = []
        for s in candidates:
            if not any(_overlaps((s.start, s.end), (c.start, c.end)) for c in chosen):
                chosen.append(s)
        chosen.sort(key=lambda s: s.start)
        return chosen

    def apply(self, scan: Scan, reveal: Mapping[str, bool]) -> Outcome:
        findings: list[Finding] = []
        rejection: Rejection | None = None
        edits: dict[int, str] = {}
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
                findings.append(Finding(s.entity, leaf.path, s.action.kind, round(s.score, 4)))
                if s.action.kind == "block":
                    rejection = rejection or BLOCKED
                elif not s.action.is_allow and rejection is None:
                    value = leaf.text[s.start:s.end]
                    pieces.append((s.start, s.end, apply_action(
                        s.action, s.entity, value, self.keyring, scan.binding, self._random)))
            if pieces and rejection is None:
                edits[index] = _splice(leaf.text, pieces)
        if rejection is not None:
            return Outcome(None, findings, rejection)
        if not edits:
            return Outcome(None, findings)
        position = 0

        def substitute(text: str, path: str) -> str:
            nonlocal position
            new = edits.get(position, text)
            position += 1
            return new

        payload = transform(scan.payload, scan.kind, scan.method, scan.to_client, substitute,
                            self.rules.scan_blobs)
        return Outcome(payload, findings)

    def protect(self, payload: dict[str, Any], kind: Kind, method: str | None, to_client: bool, server: str,
                tool: str | None, tenant: str | None = None,
                reveal: Mapping[str, bool] | None = None, principal: Principal | None = None) -> Outcome:
        """Scan and apply in one call (CLI, tests, benchmarks)."""
        scan = self.scan(payload, kind, method, to_client, server, tool, tenant, principal)
        return self.apply(scan, reveal or {})


def _claimed_entity(token: str) -> str:
    parts = token[len("<pii:"):-1].split(":")
    name = parts[0] if parts else ""
    return name if name.isupper() and len(name) <= 64 and name.replace("_", "").isalnum() else "UNKNOWN"


def _splice(text: str, pieces: list[tuple[int, int, str]]) -> str:
    out: list[str] = []
    cursor = 0
    for start, end, replacement in sorted(pieces):
        out.append(text[cursor:start])
        out.append(replacement)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)

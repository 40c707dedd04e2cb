"""The ``pii`` stage: protect personal data in both directions, restore it where allowed.

Server -> client: every user-data string (see :mod:`guard.pii.walker`) is analyzed and
each finding gets its rule's ``to_client`` action (encrypt, tokenize, hash, mask, redact,
allow, block). Client -> server: protected-value tokens the client sends back are opened
and restored when ``reveal_check(principal, server, tool, entity_type)`` allows it
(otherwise the rule passes the token unchanged or denies the request), and the rest of the
message gets the ``to_server`` actions.

Analysis is CPU work: it runs in analyzer processes (or a thread), never on the event
loop (:mod:`guard.pii.pool`); walking the payload, rules, tokens and rewriting are cheap and
run on the loop. A message is refused at admission only when it cannot be analysed within
its ``timeout`` given the backlog (``pii_overloaded``; see the pool); on that, on analyzer
errors and on the per-message ``timeout`` the stage fails closed with ``PII_UNAVAILABLE``,
unless the operator opted the server into fail-open, in which case the message passes
unchanged and ``"pii"`` is appended to ``ctx.fail_open`` for audit. Findings (entity type,
JSON path, action, score; never values) go to ``ctx.findings``.

A refusal of a *response* travelling to the client means the call already ran upstream: a
client that simply retries would run a non-idempotent tool twice. Its error ``data`` says so
(``"upstream_executed": true``, also in the audit record's verdict), next to the same
``reason`` codes as on the request path.

Security warning: ``reveal_check`` runs on the event loop; it must not block (the Casbin
authorizer's in-memory ``check`` is fine). It may also be a coroutine function.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from guard.context import PROCEED, Direction, MessageContext, Principal, Verdict
from guard.jsonrpc import ErrorCode
from guard.pii.pool import Analysis, AnalyzerSpec, PIIUnavailable, ThreadAnalysis, analysis_for
from guard.pii.protect import Protector
from guard.pii.walker import Unscannable

log = logging.getLogger("guard.pii")

WITHHELD = "[target withheld: PII analysis unavailable]"
"""What audit records as the target when the PII stage could not protect it."""
RESPONSE_UNAVAILABLE = "PII protection unavailable; the call was executed upstream"
"""Error message for a refused response: the tool ran, so a blind retry runs it again."""

RevealCheck = Callable[[Principal, str, str, str], "bool | Awaitable[bool]"]
"""``reveal_check(principal, server, tool, entity_type)``: may this principal see the original?"""

def deny_all_reveals(principal: Principal, server: str, tool: str, entity_type: str) -> bool:
    """The default when no authorizer is wired: nobody may reveal anything."""
    return False


class PIIStage:
    """Pipeline stage ``pii`` (both directions)."""

    name = "pii"
    sees_rejections = True
    """A message another stage rejected is not scanned, but its target still is: audit records it."""

    def __init__(
        self,
        protector: Protector,
        *,
        reveal_check: RevealCheck | None = None,
        timeout: float = 2.0,
        max_pending: int = 0,
        fail_open: frozenset[str] = frozenset(),
        analysis: Analysis | None = None,
    ) -> None:
        """``analysis`` defaults to one thread running ``protector.analyzer``; ``max_pending``
        (``0``: none) is an optional hard cap on messages queued or running in it."""
        self.protector = protector
        self._reveal_check: RevealCheck = reveal_check or deny_all_reveals
        self._timeout = timeout
        self._fail_open = fail_open
        if analysis is None:
            if protector.analyzer is None:
                raise ValueError("a protector without analyzer needs an analysis pool")
            analysis = ThreadAnalysis(protector.analyzer, max_pending=max_pending)
        self.analysis = analysis

    @property
    def pending(self) -> int:
        return self.analysis.pending

    async def start(self) -> None:
        """Start the analyzer processes (guard does not serve before they are ready)."""
        await self.analysis.start()

    async def process(self, ctx: MessageContext) -> Verdict:
        to_client = ctx.direction is Direction.SERVER_TO_CLIENT
        kind = ctx.message.kind
        deadline = time.monotonic() + self._timeout
        tool = ctx.target
        protector = self.protector
        rejected = ctx.verdict.rejected
        if tool is not None:
            ctx.audit_target = WITHHELD  # until protected: audit never records it in clear
        try:
            if rejected:  # only the target, for the audit record of the rejection
                payload: dict[str, Any] = {}
                collected = protector.collect(payload, kind, None, to_client, ctx.server, tool, None, tool,
                                              ctx.principal)
            else:
                collected = protector.collect(ctx.message.payload, kind, ctx.method, to_client, ctx.server, tool,
                                              ctx.principal.tenant, tool, ctx.principal)
            detections = await self.analysis.analyze(collected.items, deadline) if collected.items else []
            scan = protector.plan(collected, detections)
            decisions = await self._decide(ctx, scan.reveal_entities, tool) if scan.needs_apply else {}
            outcome = protector.apply(scan, decisions)
        except Unscannable as exc:  # attacker-chosen shape, not an outage: never fail-open
            if rejected:
                return PROCEED
            return Verdict.reject(ErrorCode.PII_BLOCKED, "Message blocked: it cannot be scanned for protected data",
                                  data={"reason": exc.reason})
        except PIIUnavailable as exc:
            return PROCEED if rejected else self._unavailable(ctx, exc.reason)
        except Exception as exc:  # a bug in guard's own PII code: fail closed, loudly
            log.exception("PII protection failed: %s", type(exc).__name__)
            return PROCEED if rejected else self._unavailable(ctx, "pii_error")
        if tool is not None:
            ctx.audit_target = outcome.target
        if rejected:
            return PROCEED
        ctx.findings.extend(outcome.findings)
        if outcome.rejection is not None:
            r = outcome.rejection
            return Verdict.reject(r.code, r.message, data={"reason": r.reason})
        if outcome.payload is not None:
            return Verdict.proceed(ctx.message.replace_payload(outcome.payload))
        return PROCEED

    async def _decide(self, ctx: MessageContext, entities: frozenset[str], tool: str | None) -> Mapping[str, bool]:
        decisions: dict[str, bool] = {}
        for entity in sorted(entities):
            try:
                answer = self._reveal_check(ctx.principal, ctx.server, tool or ctx.method or "", entity)
                if inspect.isawaitable(answer):
                    answer = await answer
                decisions[entity] = answer is True
            except Exception:
                log.exception("reveal check failed; treating as denied")
                decisions[entity] = False
        return decisions

    def _unavailable(self, ctx: MessageContext, reason: str) -> Verdict:
        if ctx.server in self._fail_open:
            log.warning("PII protection unavailable (%s); server %s is fail-open", reason, ctx.server)
            ctx.fail_open.append(self.name)
            return PROCEED
        if ctx.direction is Direction.SERVER_TO_CLIENT and ctx.message.kind.is_response:
            return Verdict.reject(ErrorCode.PII_UNAVAILABLE, RESPONSE_UNAVAILABLE,
                                  data={"reason": reason, "upstream_executed": True})
        return Verdict.reject(ErrorCode.PII_UNAVAILABLE, "PII protection unavailable", data={"reason": reason})

    async def aclose(self) -> None:
        await self.analysis.aclose()


def build_pii_stage(settings: Any, reveal_check: RevealCheck | None = None) -> PIIStage | None:
    """The stage for ``settings.pii`` (a :class:`~guard.pii.settings.PIISettings`), or ``None`` if disabled.

    With ``workers > 0`` (the default) the analyzer is built in the worker processes when the
    stage starts (:meth:`PIIStage.start`); with ``workers = 0`` it is built here (a second or
    two: spaCy and the recognizers load once). ``reveal_check`` is the authorizer hook;
    without it nobody may reveal.
    """
    from guard.pii.settings import PIISettings

    pii: PIISettings = settings.pii if hasattr(settings, "pii") else settings
    if not pii.enabled:
        return None
    spec = AnalyzerSpec.for_rules(pii.rules, pii.nlp_model, pii.cache_size)
    analysis = analysis_for(spec, workers=pii.workers, max_pending=pii.max_pending)
    analyzer = analysis.analyzer if isinstance(analysis, ThreadAnalysis) else None
    protector = Protector(analyzer, pii.rules, pii.keyring, pii.deployment_id, bind_tenant=pii.bind_tenant,
                          bind_principal=pii.bind_principal)
    return PIIStage(
        protector,
        reveal_check=reveal_check,
        timeout=pii.timeout,
        max_pending=pii.max_pending,
        fail_open=pii.fail_open,
        analysis=analysis,
    )

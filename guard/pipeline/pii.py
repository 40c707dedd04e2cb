"""The ``pii`` stage: protect personal data in both directions, restore it where allowed.

Server -> client: every user-data string (see :mod:`guard.pii.walker`) is analyzed and
each finding gets its rule's ``to_client`` action (encrypt, tokenize, hash, mask, redact,
allow, block). Client -> server: protected-value tokens the client sends back are opened
and restored when ``reveal_check(principal, server, tool, entity_type)`` allows it
(otherwise the rule passes the token unchanged or denies the request), and the rest of the
message gets the ``to_server`` actions.

Analysis is CPU work: it runs in a thread pool, never on the event loop. At most
``max_pending`` messages may be queued or running; beyond that, and on analyzer errors or
the per-message ``timeout``, the stage fails closed with ``PII_UNAVAILABLE``, unless the
operator opted the server into fail-open, in which case the message passes unchanged and
``"pii"`` is appended to ``ctx.fail_open`` for audit. Findings (entity type, JSON path,
action, score; never values) go to ``ctx.findings``.

Security warning: ``reveal_check`` runs on the event loop; it must not block (the Casbin
authorizer's in-memory ``check`` is fine). It may also be a coroutine function.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from guard.context import PROCEED, Direction, MessageContext, Principal, Verdict
from guard.jsonrpc import ErrorCode
from guard.pii.protect import Outcome, Protector, Scan

log = logging.getLogger("guard.pii")

RevealCheck = Callable[[Principal, str, str, str], "bool | Awaitable[bool]"]
"""``reveal_check(principal, server, tool, entity_type)``: may this principal see the original?"""

T = TypeVar("T")


class PIIUnavailable(Exception):
    """Internal: analysis could not complete (reason is a stable code)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def deny_all_reveals(principal: Principal, server: str, tool: str, entity_type: str) -> bool:
    """The default when no authorizer is wired: nobody may reveal anything."""
    return False


class PIIStage:
    """Pipeline stage ``pii`` (both directions)."""

    name = "pii"
    sees_rejections = False

    def __init__(
        self,
        protector: Protector,
        *,
        reveal_check: RevealCheck | None = None,
        timeout: float = 2.0,
        workers: int = 2,
        max_pending: int = 64,
        fail_open: frozenset[str] = frozenset(),
        executor: Executor | None = None,
    ) -> None:
        self.protector = protector
        self._reveal_check: RevealCheck = reveal_check or deny_all_reveals
        self._timeout = timeout
        self._max_pending = max_pending
        self._pending = 0
        self._fail_open = fail_open
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="guard-pii")

    @property
    def pending(self) -> int:
        """Messages currently queued or running in the analyzer."""
        return self._pending

    async def process(self, ctx: MessageContext) -> Verdict:
        to_client = ctx.direction is Direction.SERVER_TO_CLIENT
        kind = ctx.message.kind
        if not Protector.applies(kind, ctx.method, to_client):
            return PROCEED
        deadline = time.monotonic() + self._timeout
        tool = ctx.target
        tenant = ctx.principal.tenant
        try:
            scan: Scan = await self._offload(
                deadline, self.protector.scan, ctx.message.payload, kind, ctx.method, to_client, ctx.server,
                tool, tenant)
            if not scan.needs_apply:
                ctx.findings.extend(self.protector.apply(scan, {}).findings)
                return PROCEED
            decisions = await self._decide(ctx, scan, tool)
            outcome: Outcome = await self._offload(deadline, self.protector.apply, scan, decisions)
        except PIIUnavailable as exc:
            return self._unavailable(ctx, exc.reason)
        ctx.findings.extend(outcome.findings)
        if outcome.rejection is not None:
            r = outcome.rejection
            return Verdict.reject(r.code, r.message, data={"reason": r.reason})
        if outcome.payload is not None:
            return Verdict.proceed(ctx.message.replace_payload(outcome.payload))
        return PROCEED

    async def _decide(self, ctx: MessageContext, scan: Scan, tool: str | None) -> Mapping[str, bool]:
        decisions: dict[str, bool] = {}
        for entity in sorted(scan.reveal_entities):
            try:
                answer = self._reveal_check(ctx.principal, ctx.server, tool or ctx.method or "", entity)
                if inspect.isawaitable(answer):
                    answer = await answer
                decisions[entity] = answer is True
            except Exception:
                log.exception("reveal check failed; treating as denied")
                decisions[entity] = False
        return decisions

    async def _offload(self, deadline: float, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the pool, bounded by the queue cap and the message deadline."""
        if self._pending >= self._max_pending:
            raise PIIUnavailable("pii_overloaded")
        loop = asyncio.get_running_loop()
        self._pending += 1
        try:
            future = loop.run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:  # executor shut down
            self._pending -= 1
            raise PIIUnavailable("pii_error") from exc
        future.add_done_callback(self._release)
        remaining = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(remaining, 0.0))
        except TimeoutError as exc:
            raise PIIUnavailable("pii_timeout") from exc
        except Exception as exc:
            log.error("PII analysis failed: %s", type(exc).__name__)
            raise PIIUnavailable("pii_error") from exc

    def _release(self, future: asyncio.Future[Any]) -> None:
        # The count drops when the thread is done, not when the waiter gave up: a timed-out
        # analysis still occupies its slot until it really finishes.
        self._pending -= 1
        if not future.cancelled():
            future.exception()  # mark retrieved; the waiter already reported it

    def _unavailable(self, ctx: MessageContext, reason: str) -> Verdict:
        if ctx.server in self._fail_open:
            log.warning("PII protection unavailable (%s); server %s is fail-open", reason, ctx.server)
            ctx.fail_open.append(self.name)
            return PROCEED
        return Verdict.reject(ErrorCode.PII_UNAVAILABLE, "PII protection unavailable", data={"reason": reason})

    async def aclose(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


def build_pii_stage(settings: Any, reveal_check: RevealCheck | None = None,
                    executor: Executor | None = None) -> PIIStage | None:
    """The stage for ``settings.pii`` (a :class:`~guard.pii.settings.PIISettings`), or ``None`` if disabled.

    Builds the analyzer (a second or two: spaCy and the recognizers load once).
    ``reveal_check`` is the authorizer hook; without it nobody may reveal.
    """
    from guard.pii.engine import Analyzer, load_spacy_pipeline
    from guard.pii.settings import PIISettings

    pii: PIISettings = settings.pii if hasattr(settings, "pii") else settings
    if not pii.enabled:
        return None
    pipeline = load_spacy_pipeline(pii.nlp_model) if pii.nlp_model else None
    analyzer = Analyzer(
        entities=pii.rules.detected_entities(),
        custom=pii.rules.recognizers,
        pipeline=pipeline,
        ner=pipeline is not None,
    )
    protector = Protector(analyzer, pii.rules, pii.keyring, pii.deployment_id, bind_tenant=pii.bind_tenant)
    return PIIStage(
        protector,
        reveal_check=reveal_check,
        timeout=pii.timeout,
        workers=pii.workers,
        max_pending=pii.max_pending,
        fail_open=pii.fail_open,
        executor=executor,
    )

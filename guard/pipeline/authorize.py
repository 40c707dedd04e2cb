"""The authorize stage: Casbin policy for every message that asks for something, and list filtering.

What is policed (subject = the session's principal, server = the endpoint's upstream):

=============================  ===================================  =======================
message                        action                               target
=============================  ===================================  =======================
client request / notification  its method (``tools/call`` ...)      tool / URI / prompt
server request (legacy era)    its method (``sampling/createMessage``) none
client response to a server    ``response/<method>``                none
request                        (built-in allow unless a rule denies)
modern ``InputRequiredResult``  each ``inputRequests[*].method``     none
=============================  ===================================  =======================

Server notifications and ordinary server results pass, except the results of
``tools/list``, ``prompts/list``, ``resources/list`` and ``resources/templates/list``, which
are filtered to what the caller may use (``tools/call`` on the tool, ``prompts/get`` on the
prompt, ``resources/read`` on the URI or URI template); every other field, ``nextCursor``
included, is kept as the upstream sent it.

A request that must name a target (``tools/call``, ``prompts/get``, ``resources/*``,
``completion/complete``) and does not -- or names it inconsistently, like a completion ref whose
``type`` is unknown or that carries both ``name`` and ``uri`` -- is denied (``invalid_target``)
without consulting the rules; so is a target :func:`~guard.policy.targets.check_target` refuses.

A denial is a JSON-RPC error with the request's id, code -31001
(:attr:`~guard.jsonrpc.ErrorCode.POLICY_DENIED`), message ``Denied by policy`` and
``data: {"reason": "policy_denied"}`` -- nothing about which rule fired (MCP-NOTES: "Do not
reveal policy internals"); the rule goes to ``ctx.decision`` for audit. With
``deny_as_unknown`` a denied tool, prompt or resource is answered like the SDK servers answer an
unknown one (-32602 ``Unknown tool: X``), other requests with -32601. The relay never forwards
a rejected request, so the upstream never sees it; a rejected notification is dropped.

Argument conditions of client messages judge what the upstream will receive: with an
``argument_view`` (the PII key ring's :class:`~guard.pii.opening.TokenOpener`, wired by
:mod:`guard.runtime`), every protected-value token in the arguments is read as the value it
opens to, and a value holding a token that does not open is
:data:`~guard.policy.conditions.UNDECIDABLE` (deny rules deny, allow rules do not allow).

Fail closed: if the policy cannot be evaluated the message is denied (reason ``policy_error``);
if the argument view cannot be built, the arguments are undecidable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from guard import mcp
from guard.context import Decision, Direction, MessageContext, Principal, Verdict
from guard.jsonrpc import ErrorCode, Kind
from guard.policy.conditions import UNDECIDABLE
from guard.policy.engine import INVALID_TARGET, Authorizer
from guard.policy.model import RESPONSE_PREFIX
from guard.policy.settings import PolicySettings
from guard.policy.store import EventSink, PolicyStore

log = logging.getLogger("guard.authorize")

DENIED_MESSAGE: Final = "Denied by policy"
DENIED_DATA: Final = {"reason": "policy_denied"}
POLICY_ERROR: Final = "policy_error"

LIST_FIELDS: Final[dict[str, tuple[str, str, str]]] = {
    mcp.TOOLS_LIST: ("tools", "name", mcp.TOOLS_CALL),
    mcp.PROMPTS_LIST: ("prompts", "name", mcp.PROMPTS_GET),
    mcp.RESOURCES_LIST: ("resources", "uri", mcp.RESOURCES_READ),
    mcp.RESOURCES_TEMPLATES_LIST: ("resourceTemplates", "uriTemplate", mcp.RESOURCES_READ),
}
"""list method -> (result field, identifying key, action the caller needs on each item)."""

_UNKNOWN_LABEL: Final = {mcp.TOOLS_CALL: "tool", mcp.PROMPTS_GET: "prompt", mcp.RESOURCES_READ: "resource"}

ArgumentView = Callable[[dict[str, Any], Kind, "str | None", Principal], Any]
"""``view(payload, kind, method, principal) -> params`` as the upstream will receive them (a dict),
or :data:`~guard.policy.conditions.UNDECIDABLE`; see :class:`guard.pii.opening.TokenOpener`."""


def arguments_of(method: str, params: dict[str, Any]) -> Any:
    """The JSON a rule's condition column reads for a request.

    ``tools/call`` and ``prompts/get``: ``params.arguments``; ``completion/complete``:
    ``params.argument`` (``name``/``value``); anything else: the params themselves (``_meta``
    removed), e.g. ``maxTokens`` of a ``sampling/createMessage``.
    """
    if method in (mcp.TOOLS_CALL, mcp.PROMPTS_GET):
        args = params.get("arguments")
        return args if isinstance(args, dict) else {}
    if method == mcp.COMPLETION_COMPLETE:
        arg = params.get("argument")
        return arg if isinstance(arg, dict) else {}
    if "_meta" in params:
        return {k: v for k, v in params.items() if k != "_meta"}
    return params


class AuthorizeStage:
    """Pipeline stage enforcing the Casbin policy (see the module docstring)."""

    name = "authorize"
    sees_rejections = False

    def __init__(self, authorizer: Authorizer, *, deny_as_unknown: bool = False,
                 store: PolicyStore | None = None, watch: bool = False,
                 argument_view: ArgumentView | None = None) -> None:
        self.authorizer = authorizer
        self.deny_as_unknown = deny_as_unknown
        self.store = store
        self._watch = watch and store is not None
        self.argument_view = argument_view
        """Set by the runtime when PII protection is on (tokens are then restored upstream)."""

    @classmethod
    def from_settings(cls, settings: PolicySettings, *, on_event: EventSink | None = None,
                      clock: Callable[[], float] | None = None) -> AuthorizeStage:
        """Load the policy (raises :class:`~guard.policy.store.PolicyLoadError`) and build the stage.

        Call ``await stage.start()`` once the event loop runs (starts hot reload when
        ``settings.reload``); :meth:`aclose` stops it.
        """
        if settings.policy is None:
            raise ValueError("authorization is not configured ([policy] policy = ...)")
        kwargs: dict[str, Any] = {"interval": settings.reload_interval, "on_event": on_event}
        if clock is not None:
            kwargs["clock"] = clock
        store = PolicyStore(settings.policy, settings.model, **kwargs)
        store.load()
        return cls(Authorizer(store), deny_as_unknown=settings.deny_as_unknown, store=store,
                   watch=settings.reload)

    async def start(self) -> None:
        """Start watching the policy files (when built with ``watch``); idempotent."""
        if self.store is not None and self._watch:
            await self.store.start()

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.stop()

    # -- the stage --------------------------------------------------------------------------

    async def process(self, ctx: MessageContext) -> Verdict:
        try:
            return self._process(ctx)
        except Exception:  # fail closed: a policy that cannot be evaluated denies
            log.exception("authorization failed for %s", ctx.method)
            ctx.decision = Decision(False, POLICY_ERROR)
            return Verdict.reject(ErrorCode.POLICY_DENIED, DENIED_MESSAGE, {"reason": POLICY_ERROR},
                                  stage=self.name)

    def _process(self, ctx: MessageContext) -> Verdict:
        kind = ctx.message.kind
        method = ctx.method or ""
        if ctx.direction is Direction.CLIENT_TO_SERVER:
            if kind is Kind.REQUEST and ctx.target is None and method in mcp.TARGETED_METHODS:
                ctx.decision = Decision(False, INVALID_TARGET)  # no name/uri, or an inconsistent completion ref
                return self._deny(method, None)
            if kind is Kind.REQUEST or kind is Kind.NOTIFICATION:
                return self._police(ctx, method, ctx.target, self._client_arguments(ctx, method))
            return self._police(ctx, RESPONSE_PREFIX + method, None, {})
        if kind is Kind.REQUEST:
            return self._police(ctx, method, None, arguments_of(method, ctx.message.params))
        if kind is Kind.RESULT:
            result = ctx.message.result
            if mcp.is_input_required(result):
                return self._police_input_requests(ctx, result)
            if method in LIST_FIELDS:
                return self._filter_list(ctx, method, result)
        return Verdict.proceed()

    def _client_arguments(self, ctx: MessageContext, method: str) -> Any:
        """What a client message's conditions read: the arguments as the upstream will receive them."""
        view = self.argument_view
        if view is None:
            return arguments_of(method, ctx.message.params)
        try:
            params = view(ctx.message.payload, ctx.message.kind, method, ctx.principal)
        except Exception as exc:  # fail closed: conditions cannot judge what they cannot see
            log.warning("argument view failed (%s): conditions are undecidable", type(exc).__name__)
            return UNDECIDABLE
        if not isinstance(params, dict):
            return UNDECIDABLE if params is UNDECIDABLE else arguments_of(method, {})
        return arguments_of(method, params)

    def _police(self, ctx: MessageContext, action: str, target: str | None, arguments: Any) -> Verdict:
        decision = self.authorizer.check(ctx.principal, ctx.server, action, target, arguments)
        ctx.decision = decision
        if decision.allowed:
            return Verdict.proceed()
        return self._deny(action, target)

    def _deny(self, action: str, target: str | None) -> Verdict:
        if self.deny_as_unknown:
            label = _UNKNOWN_LABEL.get(action)
            if label is not None:
                shown = (target or "")[:256]
                data = {"uri": shown} if action == mcp.RESOURCES_READ else None
                return Verdict.reject(ErrorCode.INVALID_PARAMS, f"Unknown {label}: {shown}", data,
                                      stage=self.name)
            return Verdict.reject(ErrorCode.METHOD_NOT_FOUND, "Method not found", stage=self.name)
        return Verdict.reject(ErrorCode.POLICY_DENIED, DENIED_MESSAGE, dict(DENIED_DATA), stage=self.name)

    def _police_input_requests(self, ctx: MessageContext, result: dict[str, Any]) -> Verdict:
        """2026-07-28: server->client requests ride inside the result; police each one."""
        requests = result.get("inputRequests")
        if requests is None:
            return Verdict.proceed()
        if not isinstance(requests, dict):
            ctx.decision = Decision(False, "malformed_input_requests")
            return Verdict.reject(ErrorCode.POLICY_DENIED, DENIED_MESSAGE, dict(DENIED_DATA), stage=self.name)
        for request in requests.values():
            method = request.get("method") if isinstance(request, dict) else None
            if not isinstance(method, str):
                ctx.decision = Decision(False, "malformed_input_requests")
                return Verdict.reject(ErrorCode.POLICY_DENIED, DENIED_MESSAGE, dict(DENIED_DATA),
                                      stage=self.name)
            params = request.get("params")
            decision = self.authorizer.check(ctx.principal, ctx.server, method, None,
                                             arguments_of(method, params if isinstance(params, dict) else {}))
            ctx.decision = decision
            if not decision.allowed:
                return Verdict.reject(ErrorCode.POLICY_DENIED, DENIED_MESSAGE, dict(DENIED_DATA),
                                      stage=self.name)
        return Verdict.proceed()

    def _filter_list(self, ctx: MessageContext, method: str, result: Any) -> Verdict:
        if not isinstance(result, dict):
            return Verdict.proceed()
        field, key, action = LIST_FIELDS[method]
        items = result.get(field)
        if items is None:
            return Verdict.proceed()
        kept = self.visible(ctx.principal, ctx.server, action, key, items)
        if isinstance(items, list) and len(kept) == len(items):
            return Verdict.proceed()
        ctx.decision = Decision(True, "list_filtered")
        payload = dict(ctx.message.payload)
        payload["result"] = {**result, field: kept}
        return Verdict.proceed(ctx.message.replace_payload(payload))

    def visible(self, principal: Principal, server: str, action: str, key: str, items: Any) -> list[Any]:
        """The items of a list result the principal may use; malformed items are dropped."""
        if not isinstance(items, list):
            return []
        kept: list[Any] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            ident = item.get(key)
            if isinstance(ident, str) and self.authorizer.may_use(principal, server, action, ident):
                kept.append(item)
        return kept

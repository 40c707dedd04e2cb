"""Wiring: turn :class:`~guard.config.Settings` into the live objects a server needs.

This is the one place that orders the pipeline stages (STYLE.md rule 2)::

    authenticate -> authorize -> pii -> audit
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from guard.auth import Authenticator, AuthFailure
from guard.auth.headers import HeaderSource
from guard.cluster.directory import Directory, LocalDirectory
from guard.config import Settings
from guard.context import Event, EventKind, Principal
from guard.limits import CircuitBreaker, ConnectionCap, ConnectionLimiter, RateLimit, RateLimiter
from guard.metrics import Metrics, metrics_endpoint
from guard.metrics_flow import MetricsStage
from guard.pii.opening import TokenOpener
from guard.pipeline import Pipeline, Stage
from guard.pipeline.audit import AuditStage
from guard.pipeline.authenticate import AuthenticateStage
from guard.pipeline.authorize import AuthorizeStage
from guard.pipeline.pii import build_pii_stage
from guard.policy.conditions import UNDECIDABLE
from guard.policy.store import PolicyStore
from guard.tracing import NO_TRACER, Tracer, build_tracer

log = logging.getLogger("guard.runtime")


@dataclass
class Runtime:
    """Everything a running guard shares across sessions."""

    settings: Settings
    pipeline: Pipeline
    routes: list[Any] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)
    starters: list[Any] = field(default_factory=list)
    authenticator: Authenticator | None = None
    metrics: Metrics = field(default_factory=Metrics)
    authorize: AuthorizeStage | None = None
    key_events: list[Event] = field(default_factory=list)
    """``keys_loaded`` events (key ids only, never key material) recorded once at start."""
    readiness: list[Any] = field(default_factory=list)
    """Callables returning ``(name, ok, detail)`` for ``/readyz``."""
    rate_limiter: RateLimit | None = None
    connections: ConnectionCap = field(default_factory=lambda: ConnectionLimiter(10_000, 64))
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    directory: Directory = field(default_factory=LocalDirectory)
    """Where HTTP session ownership is recorded (Redis with ``[cluster]``, nowhere without)."""
    tracer: Tracer = NO_TRACER
    """Starts each client message's trace (:mod:`guard.tracing`; does nothing while tracing is off)."""

    async def authenticate(self, server: str, headers: HeaderSource, query: str,
                           base_url: str | None = None) -> Principal | AuthFailure:
        """The principal for a handshake, or an auth failure (see :mod:`guard.auth`). Fails closed.

        Pass the headers as received (ASGI pairs or starlette ``Headers``), not a merged dict:
        a repeated ``Authorization`` or ``Origin`` is refused (:mod:`guard.auth.headers`)."""
        if self.authenticator is None:
            return AuthFailure(status=503, reason="authentication_not_configured", headers={})
        return await self.authenticator.authenticate(server, headers, query=query, base_url=base_url)

    async def start(self) -> None:
        for starter in self.starters:
            await starter()
        for event in self.key_events:
            await self.pipeline.emit(event)

    async def aclose(self) -> None:
        await self.pipeline.aclose()
        for closer in self.closers:
            try:
                await closer()
            except Exception:
                log.exception("error while shutting down")


def build_runtime(settings: Settings) -> Runtime:
    """Build every stage in its fixed order from the configuration.

    Raises :class:`~guard.errors.ConfigError` when a referenced file (keys, policy) is
    missing or invalid: guard refuses to start rather than run without a security stage
    it was configured to have.
    """
    server = settings.server
    metrics = Metrics()
    metrics.declare_servers(settings.upstreams)
    stages: list[Stage] = [AuthenticateStage.from_settings(settings.auth)]
    authorize: AuthorizeStage | None = None
    if settings.policy.enabled:
        authorize = AuthorizeStage.from_settings(settings.policy)
        stages.append(authorize)
    else:
        log.warning("no [policy] configured: authorization is OFF, every authenticated call is allowed")
    pii = build_pii_stage(settings, reveal_check=_reveal_check(authorize))
    if pii is not None:
        stages.append(pii)
        if authorize is not None:  # argument rules judge tokens as the values the PII stage restores
            authorize.argument_view = _token_view(settings)
    audit: AuditStage | None = None
    if settings.audit.enabled:
        audit = AuditStage.from_settings(settings.audit)
        stages.append(audit)
    else:
        log.warning("no [audit] configured: nothing is recorded")
    stages.append(MetricsStage(metrics))
    pipeline = Pipeline(stages)

    def breaker(name: str, failures: int, reset: float) -> CircuitBreaker:
        return CircuitBreaker(failures, reset, on_change=lambda state: metrics.breaker_state(name, state))

    authenticator = Authenticator(settings.auth)
    tracer = build_tracer(settings.tracing)
    runtime = Runtime(
        settings=settings,
        pipeline=pipeline,
        authenticator=authenticator,
        metrics=metrics,
        authorize=authorize,
        rate_limiter=RateLimiter(server.rate_limit, server.rate_burst) if server.rate_limit > 0 else None,
        connections=ConnectionLimiter(server.max_connections, server.max_connections_per_principal),
        breakers={name: breaker(name, up.breaker_failures, up.breaker_reset)
                  for name, up in settings.upstreams.items()},
        tracer=tracer,
    )
    if settings.cluster.enabled:
        _share_through_redis(runtime, settings, metrics)
    runtime.routes += authenticator.routes()
    runtime.routes.append(metrics_endpoint(metrics, token=server.metrics_token))
    runtime.closers.append(authenticator.aclose)
    runtime.closers.append(tracer.aclose)  # after the pipeline's flush: the last answers' spans are exported
    for name in settings.auth.anonymous_servers:
        log.warning("upstream %s accepts ANONYMOUS clients ([auth] anonymous_servers)", name)
    if pii is not None and pii.protector.keyring is not None:
        ring = pii.protector.keyring
        runtime.key_events.append(Event(EventKind.KEYS_LOADED, details={
            "purpose": "pii", "key_ids": sorted(ring.secrets), "primary": ring.primary}))
    if pii is not None:
        runtime.starters.append(pii.start)  # guard serves only once the analyzers are ready
        analysis = pii.analysis
        runtime.readiness.append(lambda: ("pii", *analysis.ready()))
    if audit is not None:
        key_id = audit.log.sink.config.key.key_id  # the key AuditStage.from_settings already loaded
        runtime.key_events.append(Event(EventKind.KEYS_LOADED, details={
            "purpose": "audit-checkpoints", "key_ids": [key_id], "primary": key_id}))
        runtime.starters.insert(0, audit.start)  # a log that cannot be opened stops guard from starting
        runtime.readiness.append(lambda: ("audit", audit.log.healthy, "writable" if audit.log.healthy else
                                          "cannot write the audit log"))
    if authorize is not None and authorize.store is not None:
        authorize.store.on_event = pipeline.emit
        runtime.starters.append(authorize.start)
        runtime.readiness.append(_policy_ready(authorize.store))
    return runtime


def _share_through_redis(runtime: Runtime, settings: Settings, metrics: Metrics) -> None:
    """``[cluster]``: limits, breakers and session ownership shared by the fleet (:mod:`guard.cluster`).

    Imported here, so a guard without ``[cluster]`` never loads ``redis``.
    """
    from guard.cluster.fleet import build_fleet

    fleet = build_fleet(settings, metrics, on_breaker_change=metrics.breaker_state)
    runtime.rate_limiter = fleet.rate_limiter
    runtime.connections = fleet.connections
    runtime.breakers = dict(fleet.breakers)
    runtime.directory = fleet.directory
    runtime.readiness.append(fleet.readiness)
    runtime.starters.append(fleet.start)
    runtime.closers.append(fleet.aclose)
    log.info("[cluster]: sharing limits, breakers and HTTP sessions through Redis as replica %s",
             fleet.store.replica_id)


def _reveal_check(authorize: AuthorizeStage | None) -> Any:
    """``pii/reveal`` decisions come from the Casbin policy; without a policy nothing is revealed."""
    if authorize is None:
        return lambda principal, server, tool, entity: False
    authorizer = authorize.authorizer

    def check(principal: Principal, server: str, tool: str, entity: str) -> bool:
        return authorizer.check(principal, server, "pii/reveal", f"{tool}/{entity}").allowed

    return check


def _token_view(settings: Settings) -> TokenOpener:
    """The authorize stage's view of client arguments: tokens opened with the PII stage's key ring
    and binding (:mod:`guard.pii.opening`); a token that does not open is undecidable."""
    pii = settings.pii
    return TokenOpener(pii.keyring, pii.deployment_id, bind_tenant=pii.bind_tenant,
                       bind_principal=pii.bind_principal, scan_blobs=pii.rules.scan_blobs, undecidable=UNDECIDABLE)


def _policy_ready(store: PolicyStore) -> Any:
    def check() -> tuple[str, bool, str]:
        error = store.status().get("last_error")
        return "policy", store.snapshot is not None, f"last reload error: {error}" if error else "loaded"
    return check

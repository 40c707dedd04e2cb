"""guard's configuration: one TOML file -> one frozen, typed :class:`Settings`.

Every field has a documented default; :func:`load` collects *all* problems and raises
:class:`~guard.errors.ConfigError` listing them. Upstreams may be declared as
``[upstreams.NAME]`` or in the ``[mcpServers.NAME]`` shape MCP clients already use
(``command``/``args``/``env`` or ``url``), so an existing client config can be pasted in.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from guard import configtools as ct
from guard.audit.settings import AuditSettings, parse_audit
from guard.auth.settings import AuthSettings, parse_auth
from guard.cluster.settings import ClusterSettings, parse_cluster
from guard.errors import ConfigError
from guard.pii.settings import PIISettings, parse_pii
from guard.policy.settings import PolicySettings, parse_policy
from guard.tls import TLSSettings, parse_tls, parse_upstream_tls
from guard.tracing.settings import TracingSettings, parse_tracing

TransportKind = Literal["stdio", "websocket", "streamable-http"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ServerSettings:
    """``[server]``: the listening side."""

    host: str = "127.0.0.1"
    """Interface to bind."""
    port: int = 8787
    """TCP port to bind."""
    max_message_bytes: int = 1024 * 1024
    """Largest accepted WebSocket message, after decompression (close 1009 above it)."""
    per_message_deflate: bool = False
    """Offer permessage-deflate to clients. Off by default: compression costs CPU and the
    size limit above is enforced on the decompressed message either way."""
    max_in_flight: int = 256
    """Requests one connection may have awaiting an answer (error -31007 beyond)."""
    log_level: str = "info"
    """Logging level: debug, info, warning, error."""
    max_connections: int = 10_000
    """Open client connections guard-wide (HTTP 503 before upgrade beyond)."""
    max_connections_per_principal: int = 64
    """Open connections per authenticated subject (HTTP 429 before upgrade beyond)."""
    rate_limit: float = 50.0
    """Requests per second per principal, token bucket (error -31006 beyond); 0 disables."""
    rate_burst: int = 100
    """Token bucket size: requests a principal may send in a burst."""
    idle_timeout: float = 600.0
    """Close a session (1001) with no traffic and nothing in flight for this long; 0 disables."""
    handshake_timeout: float = 10.0
    """Seconds a new TCP connection has to complete its HTTP/WebSocket handshake (slowloris)."""
    ping_interval: float = 20.0
    """Seconds between WebSocket pings to the client; 0 disables keepalive."""
    ping_timeout: float = 20.0
    """Seconds to wait for a pong before closing the connection (1011)."""
    drain_timeout: float = 20.0
    """On SIGTERM, how long in-flight requests may take before sessions are closed (1001)."""
    outbound_queue: int = 64
    """Frames buffered toward one client; when full guard stops reading that client's upstream."""
    metrics_token: str | None = None
    """If set, ``/metrics`` requires ``Authorization: Bearer <token>`` (``${VAR}`` expanded)."""


@dataclass(frozen=True)
class UpstreamSettings:
    """``[upstreams.NAME]``: one MCP server guard fronts at ``/mcp/NAME``."""

    name: str
    transport: TransportKind
    command: str | None = None
    """stdio: executable to start, one process per client session."""
    args: tuple[str, ...] = ()
    """stdio: arguments."""
    env: Mapping[str, str] = field(default_factory=dict)
    """stdio: extra environment for the child (``${VAR}`` expanded from guard's environment).
    The child does not inherit guard's full environment, only PATH, HOME, LANG and these."""
    cwd: str | None = None
    """stdio: working directory of the child."""
    url: str | None = None
    """websocket / streamable-http: the upstream endpoint."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """websocket / streamable-http: extra request headers, e.g. the upstream's own credentials
    (``${VAR}`` expanded). Nothing from the client's handshake is ever forwarded."""
    connect_timeout: float = 10.0
    """Seconds to wait for the upstream to accept a connection / start."""
    terminate_grace: float = 3.0
    """stdio: seconds between SIGTERM and SIGKILL when a session ends."""
    log_stderr: bool = False
    """stdio: copy the child's stderr lines into guard's log. Off by default: a server's own
    log lines can hold the personal data guard protects in its messages (the lines are
    drained and counted either way, so the child never blocks on a full pipe)."""
    call_timeout: float = 120.0
    """Seconds a request may wait for the upstream's answer (error -31005, and
    ``notifications/cancelled`` upstream); 0 disables. ``subscriptions/listen`` is exempt."""
    breaker_failures: int = 5
    """Consecutive failures (connect errors, timeouts, deaths) that open the circuit; 0 disables."""
    breaker_reset: float = 30.0
    """Seconds the circuit stays open before one probe is let through."""
    reconnect_attempts: int = 3
    """websocket / streamable-http: times guard tries to re-establish a dropped upstream
    connection (backoff 0.2 s, 0.4 s, ...) before ending the session; 0 disables. Requests
    in flight at the drop get error -31004."""
    tls_ca: str | None = None
    """wss:// / https://: PEM CA bundle that replaces the system trust store for this upstream."""
    tls_client_cert: str | None = None
    """wss:// / https://: PEM client certificate for upstream mTLS (may also hold the key)."""
    tls_client_key: str | None = None
    """wss:// / https://: PEM private key of ``tls_client_cert``."""
    tls_verify: bool = True
    """wss:// / https://: verify the upstream's certificate and host name. ``false`` is for labs only."""


@dataclass(frozen=True)
class Settings:
    """The whole configuration."""

    server: ServerSettings = field(default_factory=ServerSettings)
    upstreams: Mapping[str, UpstreamSettings] = field(default_factory=dict)
    auth: AuthSettings = field(default_factory=AuthSettings)
    """``[auth]``: client authentication (see :mod:`guard.auth.settings`)."""
    policy: PolicySettings = field(default_factory=PolicySettings)
    """``[policy]``: Casbin authorization (see :mod:`guard.policy.settings`)."""
    tls: TLSSettings = field(default_factory=TLSSettings)
    """``[tls]``: TLS / mTLS on the listening socket (see :mod:`guard.tls`)."""
    pii: PIISettings = field(default_factory=PIISettings)
    """``[pii]``: PII protection (see :mod:`guard.pii.settings`)."""
    audit: AuditSettings = field(default_factory=AuditSettings)
    """``[audit]``: tamper-evident audit log (see :mod:`guard.audit.settings`)."""
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    """``[cluster]``: state shared by a fleet of replicas in Redis (see :mod:`guard.cluster.settings`)."""
    tracing: TracingSettings = field(default_factory=TracingSettings)
    """``[tracing]``: OpenTelemetry traces, off by default (see :mod:`guard.tracing.settings`)."""
    source: Path | None = None
    """The file this was loaded from (``None`` when built in code)."""


_SERVER_KEYS = {
    "host", "port", "max_message_bytes", "per_message_deflate", "max_in_flight", "log_level",
    "max_connections", "max_connections_per_principal", "rate_limit", "rate_burst", "idle_timeout",
    "handshake_timeout", "ping_interval", "ping_timeout", "drain_timeout", "outbound_queue", "metrics_token",
}
_UPSTREAM_KEYS = {
    "transport", "type", "command", "args", "env", "cwd", "url", "headers", "connect_timeout",
    "terminate_grace", "log_stderr", "call_timeout", "breaker_failures", "breaker_reset", "reconnect_attempts",
    "tls_ca", "tls_client_cert", "tls_client_key", "tls_verify",
}
_TOP_KEYS = {"server", "upstreams", "mcpServers", "auth", "policy", "tls", "pii", "audit", "cluster",
             "tracing"}


def parse_server(raw: Mapping[str, Any], problems: ct.Problems) -> ServerSettings:
    path = "server"
    ct.unknown_keys(raw, _SERVER_KEYS, path, problems)
    d = ServerSettings()
    port = ct.get(raw, "port", int, d.port, path, problems)
    if not 0 <= port <= 65535:
        problems.add("server.port", "must be between 0 and 65535")
        port = d.port
    return ServerSettings(
        host=ct.get(raw, "host", str, d.host, path, problems),
        port=port,
        max_message_bytes=ct.positive(raw, "max_message_bytes", int, d.max_message_bytes, path, problems),
        per_message_deflate=ct.get(raw, "per_message_deflate", bool, d.per_message_deflate, path, problems),
        max_in_flight=ct.positive(raw, "max_in_flight", int, d.max_in_flight, path, problems),
        log_level=ct.choice(raw, "log_level", ("debug", "info", "warning", "error"), d.log_level, path,
                            problems),
        max_connections=ct.positive(raw, "max_connections", int, d.max_connections, path, problems),
        max_connections_per_principal=ct.positive(raw, "max_connections_per_principal", int,
                                                  d.max_connections_per_principal, path, problems),
        rate_limit=ct.positive(raw, "rate_limit", float, d.rate_limit, path, problems, allow_zero=True),
        rate_burst=ct.positive(raw, "rate_burst", int, d.rate_burst, path, problems),
        idle_timeout=ct.positive(raw, "idle_timeout", float, d.idle_timeout, path, problems, allow_zero=True),
        handshake_timeout=ct.positive(raw, "handshake_timeout", float, d.handshake_timeout, path, problems),
        ping_interval=ct.positive(raw, "ping_interval", float, d.ping_interval, path, problems, allow_zero=True),
        ping_timeout=ct.positive(raw, "ping_timeout", float, d.ping_timeout, path, problems),
        drain_timeout=ct.positive(raw, "drain_timeout", float, d.drain_timeout, path, problems, allow_zero=True),
        outbound_queue=ct.positive(raw, "outbound_queue", int, d.outbound_queue, path, problems),
        metrics_token=ct.expand(ct.get(raw, "metrics_token", str, "", path, problems), "server.metrics_token",
                                problems) or None,
    )


def _infer_transport(raw: Mapping[str, Any], path: str, problems: ct.Problems) -> TransportKind | None:
    declared = raw.get("transport", raw.get("type"))
    aliases: dict[str, TransportKind] = {
        "stdio": "stdio", "websocket": "websocket", "ws": "websocket",
        "streamable-http": "streamable-http", "http": "streamable-http", "streamableHttp": "streamable-http",
    }
    if declared is not None:
        if not isinstance(declared, str) or declared not in aliases:
            problems.add(f"{path}.transport", "must be stdio, websocket or streamable-http")
            return None
        return aliases[declared]
    if "command" in raw:
        return "stdio"
    url = raw.get("url")
    if isinstance(url, str):
        if url.startswith(("ws://", "wss://")):
            return "websocket"
        if url.startswith(("http://", "https://")):
            return "streamable-http"
    problems.add(path, "needs either command (stdio) or url (ws://, wss://, http://, https://)")
    return None


def parse_upstream(name: str, raw: Any, problems: ct.Problems, section: str,
                   base_dir: Path | None = None) -> UpstreamSettings | None:
    path = f"{section}.{name}"
    if not isinstance(raw, Mapping):
        problems.add(path, "must be a table")
        return None
    if not _NAME.match(name):
        problems.add(path, "name must be 1-64 characters of letters, digits, '_', '-', '.'")
    ct.unknown_keys(raw, _UPSTREAM_KEYS, path, problems)
    transport = _infer_transport(raw, path, problems)
    if transport is None:
        return None
    d = UpstreamSettings(name=name, transport=transport)
    command = ct.get(raw, "command", str, "", path, problems) or None
    url = ct.get(raw, "url", str, "", path, problems) or None
    if url is not None:
        url = ct.expand(url, f"{path}.url", problems)
    if transport == "stdio" and command is None:
        problems.add(path, "a stdio upstream needs command")
    if transport != "stdio":
        if url is None:
            problems.add(path, f"a {transport} upstream needs url")
        elif transport == "websocket" and not url.startswith(("ws://", "wss://")):
            problems.add(f"{path}.url", "a websocket upstream url must start with ws:// or wss://")
        elif transport == "streamable-http" and not url.startswith(("http://", "https://")):
            problems.add(f"{path}.url", "a streamable-http upstream url must start with http:// or https://")
    cwd = ct.get(raw, "cwd", str, "", path, problems) or None
    tls = parse_upstream_tls(raw, path, problems, base_dir or Path.cwd(), url)
    return UpstreamSettings(
        name=name,
        transport=transport,
        command=command,
        args=ct.str_list(raw, "args", (), path, problems),
        env=ct.str_map(raw, "env", path, problems),
        cwd=cwd,
        url=url,
        headers=ct.str_map(raw, "headers", path, problems),
        connect_timeout=ct.positive(raw, "connect_timeout", float, d.connect_timeout, path, problems),
        terminate_grace=ct.positive(raw, "terminate_grace", float, d.terminate_grace, path, problems),
        log_stderr=ct.get(raw, "log_stderr", bool, d.log_stderr, path, problems),
        call_timeout=ct.positive(raw, "call_timeout", float, d.call_timeout, path, problems, allow_zero=True),
        breaker_failures=ct.positive(raw, "breaker_failures", int, d.breaker_failures, path, problems,
                                     allow_zero=True),
        breaker_reset=ct.positive(raw, "breaker_reset", float, d.breaker_reset, path, problems),
        reconnect_attempts=ct.positive(raw, "reconnect_attempts", int, d.reconnect_attempts, path, problems,
                                       allow_zero=True),
        tls_ca=tls.ca,
        tls_client_cert=tls.client_cert,
        tls_client_key=tls.client_key,
        tls_verify=tls.verify,
    )


def parse(raw: Mapping[str, Any], source: Path | None = None) -> Settings:
    """Build :class:`Settings` from a decoded TOML document, raising one ConfigError with all problems."""
    problems = ct.Problems()
    ct.unknown_keys(raw, _TOP_KEYS, "", problems)
    server = parse_server(ct.table(raw, "server", "", problems), problems)
    upstreams: dict[str, UpstreamSettings] = {}
    for section in ("upstreams", "mcpServers"):
        for name, body in ct.table(raw, section, "", problems).items():
            if name in upstreams:
                problems.add(f"{section}.{name}", "upstream declared twice")
                continue
            upstream = parse_upstream(str(name), body, problems, section,
                                      source.parent if source is not None else None)
            if upstream is not None:
                upstreams[upstream.name] = upstream
    if not upstreams and not problems:
        problems.add("upstreams", "declare at least one upstream ([upstreams.NAME] or [mcpServers.NAME])")
    base_dir = source.parent if source is not None else Path.cwd()
    auth = parse_auth(ct.table(raw, "auth", "", problems), problems, base_dir, upstreams=tuple(upstreams))
    policy = parse_policy(ct.table(raw, "policy", "", problems), problems, base_dir, present="policy" in raw)
    tls = parse_tls(ct.table(raw, "tls", "", problems), problems, base_dir)
    pii = parse_pii(ct.table(raw, "pii", "", problems), problems, base_dir, upstreams=tuple(upstreams),
                    present="pii" in raw)
    audit = parse_audit(ct.table(raw, "audit", "", problems), problems, base_dir, present="audit" in raw)
    cluster = parse_cluster(ct.table(raw, "cluster", "", problems), problems, present="cluster" in raw)
    tracing = parse_tracing(ct.table(raw, "tracing", "", problems), problems, present="tracing" in raw)
    if problems:
        raise ConfigError(problems.items)
    if not audit.replica and cluster.replica_id:
        audit = replace(audit, replica=cluster.replica_id)  # one name per replica, in Redis and audit
    return Settings(server=server, upstreams=upstreams, auth=auth, policy=policy, tls=tls, pii=pii,
                    audit=audit, cluster=cluster, tracing=tracing, source=source)


def load(path: str | Path) -> Settings:
    """Load and validate a TOML configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror}"]) from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{p}: not valid TOML: {exc}"]) from exc
    # Absolute but not resolved: paths relative to a config file mounted from a Kubernetes
    # ConfigMap (guard.toml -> ..data/guard.toml -> ..<timestamp>/guard.toml) must stay under the
    # ..data link, which kubelet swaps on every update, not under the timestamped directory it
    # deletes right after (the policy would stop reloading).
    return parse(raw, source=Path(os.path.abspath(p)))

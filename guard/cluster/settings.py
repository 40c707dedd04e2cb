"""``[cluster]``: shared state for a fleet of guard replicas (docs/operators.md, "Fleet").

Absent, guard keeps every limit in-process, exactly as a single replica always has, and
never imports ``redis``. Present, per-principal rate limits and connection caps, circuit
breakers and HTTP session ownership live in one Redis that every replica reaches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from guard import configtools as ct

Fallback = Literal["local", "closed"]
_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_KEYS = {"redis_url", "deadline_ms", "key_prefix", "fallback", "replicas", "replica_id", "lease_ttl",
         "sync_interval"}


@dataclass(frozen=True)
class ClusterSettings:
    """``[cluster]``: where the fleet's shared state lives and what happens without it."""

    redis_url: str = ""
    """``redis://`` / ``rediss://`` URL (``${VAR}`` expanded, so a password can stay in the
    environment). Empty: no cluster, in-process state (the default)."""
    deadline_ms: int = 100
    """Longest any request waits on Redis; past it the ``fallback`` decides for that request
    (three late answers in a row, or one failed call, and Redis counts as down)."""
    key_prefix: str = "guard"
    """Prefix of every Redis key (several fleets may share one Redis). Keys are written as
    ``{prefix}:...`` (one Redis Cluster hash slot)."""
    fallback: Fallback = "local"
    """While Redis is unreachable: ``local`` = each replica enforces its share of every
    limit (limit / live replicas, at least 1) in-process; ``closed`` = refuse what needs a
    limit (requests -31006, new connections 503) and report not ready."""
    replicas: int = 1
    """Fleet size assumed for the local share until Redis has reported how many replicas are
    live (each heartbeat updates it)."""
    replica_id: str = ""
    """This replica's name in Redis and logs, followed by ``-<pid>`` (so ``--workers``
    processes and restarts never share an identity); empty = the host name (the pod name on
    Kubernetes)."""
    lease_ttl: float = 10.0
    """Seconds a replica's lease lives without a heartbeat: the connections a dead replica
    held stop counting after this long."""
    sync_interval: float = 0.5
    """Seconds between reads of the shared breaker states (how soon a breaker opened on one
    replica is seen by the others) and between reconnect attempts while Redis is down."""

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url)

    @property
    def deadline(self) -> float:
        return self.deadline_ms / 1000.0


def parse_cluster(raw: Mapping[str, Any], problems: ct.Problems, *, present: bool) -> ClusterSettings:
    """Validate ``[cluster]``; a present section needs ``redis_url``."""
    path = "cluster"
    d = ClusterSettings()
    if not present:
        return d
    ct.unknown_keys(raw, _KEYS, path, problems)
    url = ct.expand(ct.get(raw, "redis_url", str, "", path, problems), "cluster.redis_url", problems)
    if not url:
        problems.add("cluster.redis_url", "required when [cluster] is present (redis://host:port/db)")
    elif not url.startswith(("redis://", "rediss://", "unix://")):
        problems.add("cluster.redis_url", "must start with redis://, rediss:// or unix://")
    prefix = ct.get(raw, "key_prefix", str, d.key_prefix, path, problems)
    if not _PREFIX.match(prefix):
        problems.add("cluster.key_prefix", "must be 1-64 characters of letters, digits, '_', '.', ':', '-'")
        prefix = d.key_prefix
    replica_id = ct.get(raw, "replica_id", str, d.replica_id, path, problems)
    if replica_id and not _PREFIX.match(replica_id):
        problems.add("cluster.replica_id", "must be 1-64 characters of letters, digits, '_', '.', ':', '-'")
        replica_id = d.replica_id
    fallback: Fallback = "closed" if ct.choice(raw, "fallback", ("local", "closed"), d.fallback, path,
                                               problems) == "closed" else "local"
    return ClusterSettings(
        redis_url=url,
        deadline_ms=ct.positive(raw, "deadline_ms", int, d.deadline_ms, path, problems),
        key_prefix=prefix,
        fallback=fallback,
        replicas=ct.positive(raw, "replicas", int, d.replicas, path, problems),
        replica_id=replica_id,
        lease_ttl=ct.positive(raw, "lease_ttl", float, d.lease_ttl, path, problems),
        sync_interval=ct.positive(raw, "sync_interval", float, d.sync_interval, path, problems),
    )

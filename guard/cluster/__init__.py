"""A fleet of guard replicas sharing state in Redis (``[cluster]``; docs/operators.md, "Fleet").

What is shared, and the module that does it::

    settings.py   [cluster]: redis_url, deadline_ms, key_prefix, fallback, replicas, replica_id, ...
    store.py      the only Redis client: deadline on every call, up/down state, lease heartbeat
    scripts.py    the Lua scripts (token bucket, connection counts, breaker, leases)
    limits.py     per-principal rate limit and connection cap across the fleet (+ local fallback)
    breaker.py    per-upstream circuit breaker mirrored through Redis
    sessions.py   Streamable HTTP session ownership (why a session id is unknown here)
    directory.py  the interface the HTTP front door records ownership through (no redis)
    fleet.py      wiring: build it all from Settings (imports redis; only when [cluster] is set)
    metrics.py    guard_cluster_* series

Importing this package does not import ``redis``: :mod:`guard.runtime` loads
:mod:`guard.cluster.fleet` only when ``[cluster]`` is configured.
"""

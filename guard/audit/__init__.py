"""Tamper-evident audit log: record schema, hash chain, signed checkpoints, verify, query, report.

Modules (each with one job):

* :mod:`~guard.audit.schema`     ECS-named records built from typed context fields (no I/O)
* :mod:`~guard.audit.canonical`  canonical JSON form, SHA-256 chain hash, RFC 3339 times
* :mod:`~guard.audit.checkpoint` Ed25519-signed checkpoints (via :mod:`guard.crypto.signing`)
* :mod:`~guard.audit.sink`       file writer: chain, checkpoint, rotate, fsync
* :mod:`~guard.audit.log`        async front: writes on the loop, group-commit fsync, failure handling
* :mod:`~guard.audit.settings`   ``[audit]`` configuration
* :mod:`~guard.audit.reader`, :mod:`~guard.audit.verify`, :mod:`~guard.audit.query`,
  :mod:`~guard.audit.report`, :mod:`~guard.audit.cli`   the ``guard audit`` commands

The pipeline stage lives in :mod:`guard.pipeline.audit`. This package imports nothing
at import time so :mod:`guard.config` can import its settings without cycles.
"""

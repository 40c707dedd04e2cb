"""An analyzer process: ``python -m guard.pii.worker``, started and fed by :mod:`guard.pii.pool`.

Protocol on stdin/stdout, both directions framed as a 4-byte big-endian length and a
pickle (the pipes are private to guard and this process):

* in: first an :class:`~guard.pii.pool.AnalyzerSpec`, then requests ``(id, items)``;
* out: first ``("ready", pid)`` once the analyzer is built, then per request, in order,
  ``(id, detections, None, seconds)`` or ``(id, None, error type name, seconds)``, where
  ``seconds`` is the wall time this process spent analysing the request, from having read it
  to having its answer (what guard's admission estimates a backlog from).

The process exits when stdin closes (guard stopped or closed the pool, or died); it
ignores SIGINT and SIGTERM (see :func:`main`). It never reads
guard's configuration, keys or payloads beyond the strings it is given, and it writes
nothing but frames to stdout; it logs JSON lines to stderr at guard's level, with the
same caps on libraries that would log analyzed text.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import time
from typing import Any, BinaryIO

HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30


def frame_size(header: bytes) -> int:
    """The body size a frame header announces (``ValueError`` beyond :data:`MAX_FRAME`)."""
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError("frame too large")
    return int(size)


def read_frame(stream: BinaryIO) -> Any:
    """The next object, or ``None`` at end of input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    size = frame_size(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


def frame(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def main(argv: list[str]) -> int:
    """``argv``: optionally guard's log level (the worker logs JSON to stderr like guard)."""
    # guard stops this process by closing its input once guard has drained; a signal sent to
    # the whole process group or service (Ctrl-C, `timeout`, systemd) must not take the
    # analyzer away from a guard that is still finishing its in-flight messages.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames may reach the real stdout
    from guard import logs
    from guard.pii.scan.cache import VerdictCache

    logs.configure(argv[0] if argv else "warning")  # also caps Presidio's content-logging loggers

    spec = read_frame(stdin)
    if spec is None:
        return 0
    analyzer = spec.build()
    cache = VerdictCache(spec.cache_size)
    stdout.write(frame(("ready", os.getpid())))
    stdout.flush()
    while True:
        request = read_frame(stdin)
        if request is None:
            return 0
        started = time.perf_counter()
        request_id, items = request
        detections: Any = None
        error: str | None = None
        try:
            detections = cache.analyze(analyzer, items)
        except Exception as exc:  # reported to guard, which fails the message closed
            error = type(exc).__name__
        # Measured before the answer is written: a write that blocks because guard is not
        # reading is guard's loop delay (a latency), not a cost per queued message.
        stdout.write(frame((request_id, detections, error, time.perf_counter() - started)))
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

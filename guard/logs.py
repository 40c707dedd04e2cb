"""Structured JSON logging to stderr.

Log records carry ids, names, codes and reasons — never tokens, message bodies or PII.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from guard.auth.logfilter import CredentialRedactingFilter


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception type)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "info") -> None:
    """Route guard's (and uvicorn's) logs through the JSON formatter on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CredentialRedactingFilter())  # uvicorn logs handshake headers at debug level
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    cap_third_party_loggers()


def cap_third_party_loggers() -> None:
    """Keep libraries that log message content out of guard's log, whatever guard's own level.

    presidio-analyzer logs the text it analyzes at debug level ("Context list is: <value>").
    """
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("presidio-analyzer", "presidio_analyzer", "tldextract", "spacy"):
        logging.getLogger(name).setLevel(logging.WARNING)

"""Shared pytest configuration."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The demo server and test upstreams run with the same interpreter as the tests.
os.environ.setdefault("GUARD_TEST_PYTHON", sys.executable)

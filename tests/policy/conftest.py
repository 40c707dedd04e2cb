"""Shared helpers for the policy tests: build snapshots from text, principals, contexts."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.context import Principal
from guard.policy.engine import Snapshot
from guard.policy.model import MODEL_TEXT
from guard.policy.store import build_snapshot

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"


def snapshot(text: str) -> Snapshot:
    """A snapshot of ``text`` under the built-in model (raises PolicyLoadError on errors)."""
    return build_snapshot(MODEL_TEXT, text)


def user(sub: str, *roles: str) -> Principal:
    return Principal(subject=sub, roles=tuple(roles))


@pytest.fixture
def shipped() -> Snapshot:
    return build_snapshot((POLICIES / "model.conf").read_text(), (POLICIES / "policy.csv").read_text())

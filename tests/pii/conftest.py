"""Fixtures for the PII tests: the shipped rules, one analyzer per session, fixed keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard import configtools as ct
from guard.crypto.aead import KeyRing
from guard.pii.engine import Analyzer
from guard.pii.pool import AnalyzerSpec
from guard.pii.protect import Protector
from guard.pii.rules import PIIRules, load_rules

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "policies" / "pii.toml"
FIXED_SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(100, 132))


def fixed_random(n: int) -> bytes:
    """Deterministic nonce source for tests only (never reuse a GCM nonce for real)."""
    return bytes([7]) * n


@pytest.fixture(scope="session")
def rules() -> PIIRules:
    problems = ct.Problems()
    loaded = load_rules(RULES_FILE, problems)
    assert not problems.items
    return loaded


@pytest.fixture(scope="session")
def analyzer(rules: PIIRules) -> Analyzer:
    return AnalyzerSpec.for_rules(rules).build()


@pytest.fixture(scope="session")
def full_analyzer() -> Analyzer:
    """Every predefined recognizer (for the recall properties)."""
    return Analyzer()


@pytest.fixture()
def ring() -> KeyRing:
    return KeyRing(primary="k1", secrets={"k1": FIXED_SECRET})


@pytest.fixture()
def protector(analyzer: Analyzer, rules: PIIRules, ring: KeyRing) -> Protector:
    return Protector(analyzer, rules, ring, "test-deployment")

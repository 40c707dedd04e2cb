"""Accuracy on the labelled corpus of MCP traffic (full table: ``bench/pii_bench.py --accuracy``)."""

from __future__ import annotations

from guard.pii.protect import Protector
from tests.pii.corpus import evaluate, load_corpus


def test_corpus_covers_every_position_kind() -> None:
    records = load_corpus()
    kinds = {(r["direction"], r["kind"], r["method"]) for r in records}
    assert ("to_server", "request", "tools/call") in kinds
    assert ("to_client", "notification", "notifications/message") in kinds
    assert any("<json>" in label["path"] for r in records for label in r["labels"])
    assert sum(len(r["labels"]) for r in records) >= 70


def test_recall_and_precision_per_entity(protector: Protector) -> None:
    score = evaluate(protector)
    for entity in ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "EMPLOYEE_ID", "PHONE_NUMBER"):
        assert score.recall(entity) == 1.0, (entity, score.misses)
        assert score.precision(entity) >= 0.85, (entity, score.false_alarms)
    # PII-free records stay PII-free (apart from Presidio's known order-number/phone confusion).
    assert all(name.startswith("ticket search") for name, _, _ in score.false_alarms)

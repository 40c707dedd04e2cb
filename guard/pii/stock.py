"""Stock Presidio, built its own way: the oracle guard's analyzer is checked against.

Not on guard's hot path. Tests (``tests/pii/test_stock.py``) and the benchmarks
(``bench/run.py``, ``bench/pii_bench.py``) compare guard's detections with what plain
Presidio finds on the same strings:

* the registry is Presidio's own defaults (``RecognizerRegistry().load_predefined_recognizers``
  for English: the same recognizer classes guard selects, with the stock ``PhoneRecognizer``
  running ``phonenumbers`` for each of its regions), never guard's recognizer instances;
* the rules file's custom recognizers are added as plain Presidio ``PatternRecognizer``
  objects built from the same fields, and its ``[entities.X] context`` words replace the
  context words of the stock recognizers of that entity type (what a recognizer's
  ``context:`` entry in Presidio's YAML configuration does);
* ``AnalyzerEngine`` gets the same blank spaCy pipeline guard configures (a tokenizer:
  lemmas are lower-cased tokens, see :class:`guard.pii.engine.PipelineNlpEngine`), and is
  asked for the entity types guard asks for, with ``default_score_threshold`` 0 (Presidio's
  default).

The one change to the environment: the stock e-mail recognizer validates domains with
``tldextract.extract``, whose module-level extractor downloads the public-suffix list on
first use. :func:`stock_analyzer` points that extractor at tldextract's bundled snapshot
(the same list, offline), because guard never touches the network at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import spacy
import tldextract
from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry, RecognizerResult

from guard.pii.analysis import Detection
from guard.pii.rules import RecognizerSpec

LANGUAGE = "en"


class StockPresidio:
    """``AnalyzerEngine.analyze`` with the default registry (plus the rules' custom recognizers)."""

    def __init__(self, entities: Iterable[str] | None, custom: Sequence[RecognizerSpec] = (),
                 context: Mapping[str, Sequence[str]] | None = None) -> None:
        from guard.pii.engine import PipelineNlpEngine, offline_tldextract

        tldextract.tldextract.TLD_EXTRACTOR = offline_tldextract()
        nlp_engine = PipelineNlpEngine(spacy.blank(LANGUAGE))
        nlp_engine.load()
        registry = RecognizerRegistry(supported_languages=[LANGUAGE])
        registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp_engine)
        for spec in custom:
            optional: dict[str, Any] = {
                "patterns": [Pattern(p.name, p.regex, p.score) for p in spec.patterns] or None,
                "deny_list": list(spec.deny_list) or None,
                "context": list(spec.context) or None,
            }
            registry.add_recognizer(PatternRecognizer(
                supported_entity=spec.entity, name=spec.name, supported_language=LANGUAGE,
                deny_list_score=spec.deny_list_score, **optional))
        for recognizer in registry.recognizers:  # as a recognizer's YAML ``context:`` would configure it
            for entity in recognizer.supported_entities:
                if context and entity in context:
                    recognizer.context = list(context[entity])
        self.engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[LANGUAGE])
        known = {e for r in registry.recognizers for e in r.supported_entities}
        self.entities: list[str] = sorted(known if entities is None else set(entities) & known)

    def analyze(self, text: str, context: Sequence[str] | None = None) -> list[RecognizerResult]:
        results: list[RecognizerResult] = self.engine.analyze(
            text=text, language=LANGUAGE, entities=self.entities, context=list(context) if context else None)
        return results

    def detections(self, text: str, context: Sequence[str] | None = None) -> list[Detection]:
        return [Detection(r.entity_type, r.start, r.end, float(r.score)) for r in self.analyze(text, context)]


def missing(guard: Iterable[Detection], stock: Iterable[Detection]) -> list[Detection]:
    """Stock detections guard's do not cover: none with the same entity type and span and
    at least the same score (guard's findings must be a superset)."""
    best: dict[tuple[str, int, int], float] = {}
    for d in guard:
        key = (d.entity_type, d.start, d.end)
        best[key] = max(best.get(key, 0.0), d.score)
    return [d for d in stock if best.get((d.entity_type, d.start, d.end), -1.0) < d.score - 1e-9]

"""Presidio's pattern loop (``PatternRecognizer.analyze``) without its per-match bookkeeping.

``PatternRecognizer.__analyze_patterns`` runs, for every pattern of a recognizer, a timed
``finditer`` (two ``datetime.now`` calls and a debug log line per pattern) and builds an
``AnalysisExplanation`` (with an f-string) for every match, including matches it then drops.
Guard drops explanations, so :func:`analyze_patterns` does the same matching with the same
engine, flags, timeout, order, scores, ``validate_result`` / ``invalidate_result`` semantics
and final ``remove_duplicates``, and leaves ``analysis_explanation`` unset (``None``).
:func:`explain` gives such results a plain explanation where Presidio code that writes to it
(the context enhancer) runs.

Only recognizers that use Presidio's own ``analyze`` and pattern loop qualify
(:func:`supports`): a subclass overriding either keeps its own code. ``tests/pii/test_stock.py``
holds guard's findings equal to stock Presidio's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import regex
from presidio_analyzer import AnalysisExplanation, EntityRecognizer, PatternRecognizer, RecognizerResult
from presidio_analyzer.pattern_recognizer import REGEX_TIMEOUT_SECONDS

_LOG = logging.getLogger("presidio-analyzer")
_NAME = RecognizerResult.RECOGNIZER_NAME_KEY
_ID = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY
_LOOP = "_PatternRecognizer__analyze_patterns"
_UNEXPLAINED: Any = None
"""``analysis_explanation`` of the results (Presidio annotates it as never ``None``)."""


def supports(recognizer: EntityRecognizer) -> bool:
    """Whether ``recognizer.analyze`` is Presidio's pattern loop, unmodified."""
    kind = type(recognizer)
    return (isinstance(recognizer, PatternRecognizer)
            and kind.analyze is PatternRecognizer.analyze
            and getattr(kind, _LOOP, None) is getattr(PatternRecognizer, _LOOP))


def analyze_patterns(recognizer: Any, text: str, positions: Sequence[int] | None = None) -> list[RecognizerResult]:
    """``recognizer.analyze(text, ...)`` for a recognizer :func:`supports` (explanations unset).

    ``positions`` (ascending) restricts the loop to those patterns, for a caller that knows the
    others have no match in ``text`` (they would add nothing).
    """
    patterns = recognizer.patterns
    if not patterns:
        return []
    if positions is not None:
        patterns = [patterns[i] for i in positions]
    flags = recognizer.global_regex_flags
    entity = recognizer.supported_entities[0]
    name = recognizer.name
    rec_id = recognizer.id
    validate = recognizer.validate_result
    invalidate = recognizer.invalidate_result
    results: list[RecognizerResult] = []
    for pattern in patterns:
        if not pattern.compiled_regex or pattern.compiled_with_flags != flags:
            pattern.compiled_with_flags = flags
            pattern.compiled_regex = regex.compile(pattern.regex, flags=flags)
        try:
            for match in pattern.compiled_regex.finditer(text, timeout=REGEX_TIMEOUT_SECONDS):
                start, end = match.span()
                if start == end:
                    continue  # Presidio skips empty matches
                current = text[start:end]
                score = pattern.score
                validation = validate(current)
                if validation is not None:
                    score = EntityRecognizer.MAX_SCORE if validation else EntityRecognizer.MIN_SCORE
                invalidation = invalidate(current)
                if invalidation is not None and invalidation:
                    score = EntityRecognizer.MIN_SCORE
                if score > EntityRecognizer.MIN_SCORE:
                    results.append(RecognizerResult(entity, start, end, score, _UNEXPLAINED,
                                                    {_NAME: name, _ID: rec_id}))
        except TimeoutError:
            _LOG.warning("Regex pattern '%s' timed out after %s seconds, skipping.",
                         pattern.name, REGEX_TIMEOUT_SECONDS)
    return remove_duplicates(results)


def remove_duplicates(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """``EntityRecognizer.remove_duplicates``, without its sorting and grouping for fewer than
    two results (then it only drops a zero score)."""
    if len(results) < 2:
        return [r for r in results if r.score != 0]
    return list(EntityRecognizer.remove_duplicates(results))


def explain(results: Iterable[RecognizerResult]) -> None:
    """Give results without an explanation a plain one (Presidio's enhancer writes to it)."""
    for result in results:
        if result.analysis_explanation is None:
            meta = result.recognition_metadata or {}
            result.analysis_explanation = AnalysisExplanation(str(meta.get(_NAME, "")), result.score)

"""The PII analyzer: Presidio's pattern and checksum recognizers, offline, and fast.

Setup (no network, no downloaded model):

* The NLP engine is a spaCy pipeline guard hands to Presidio: ``spacy.blank("en")`` (a
  tokenizer only) by default, or an installed spaCy pipeline named by the operator (for
  PERSON/LOCATION via NER). Guard never calls ``spacy.cli.download``. Blank pipelines
  have no lemmatizer, so the lower-cased token stands in for the lemma; Presidio's
  context words ("phone", "ssn", ...) then still raise scores.
* The e-mail recognizer validates domains with ``tldextract`` built on its bundled
  public-suffix snapshot (``suffix_list_urls=(), cache_dir=None``): the stock recognizer
  calls ``tldextract.extract``, which fetches the list from the Internet on first use.

Speed, without losing recall (the property tests in ``tests/pii`` hold this against
plain ``AnalyzerEngine.analyze``):

* **Triggers.** Each predefined recognizer gets a cheap regular expression that any
  text it can match must contain (every credit-card, phone, SSN, date, IBAN... match
  contains a digit; every e-mail match contains ``@``; every URL match contains ``.``
  followed by two letters; ...). Trigger patterns are compiled with the recognizers' own
  flags and ``regex`` engine, so case-folding agrees. A recognizer whose trigger does not
  occur in a string cannot produce a result there and is skipped; a string no trigger
  fires on is not analyzed at all. Custom and NER recognizers have no trigger: they run
  on every string.
* **Lazy NLP artifacts.** Tokenization is only needed for context-word scoring of
  results that exist. Guard passes Presidio artifacts that tokenize on first access, so a
  string with no match is never tokenized.
* The supported-entity list and recognizer selection are computed once, not per call.

Results are the recognizer results Presidio's ``AnalyzerEngine.analyze`` would return
for the same string with the same recognizers (``default_score_threshold`` 0); policy
thresholds are applied later by the rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import phonenumbers
import regex
import spacy
import tldextract
from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    MedicalLicenseRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    SpacyRecognizer,
    UrlRecognizer,
    UsBankRecognizer,
    UsItinRecognizer,
    UsLicenseRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
    UuidRecognizer,
)
from spacy.language import Language
from spacy.tokens import Doc

from guard.errors import PIIError
from guard.pii.rules import RecognizerSpec

LANGUAGE = "en"
_FLAGS = regex.DOTALL | regex.MULTILINE | regex.IGNORECASE
"""Presidio's global regex flags (``global_regex_flags`` default 26)."""

# Trigger patterns: a superset condition for each recognizer (see module docstring).
# ``\p{N}`` (any Unicode number) is wider than the ``\d``/``[0-9]`` the recognizers use and
# than the decimal digits phonenumbers accepts.
_DIGIT = r"\p{N}"
TRIGGERS: dict[str, str] = {
    "CreditCardRecognizer": _DIGIT,
    "UsBankRecognizer": _DIGIT,
    "UsLicenseRecognizer": _DIGIT,
    "UsItinRecognizer": _DIGIT,
    "UsPassportRecognizer": _DIGIT,
    "UsSsnRecognizer": _DIGIT,
    "NhsRecognizer": _DIGIT,
    "CryptoRecognizer": _DIGIT,
    "DateRecognizer": _DIGIT,
    "IbanRecognizer": _DIGIT,
    "MedicalLicenseRecognizer": _DIGIT,
    "PrunedPhoneRecognizer": _DIGIT,
    "OfflineEmailRecognizer": r"@",
    "IpRecognizer": r"[\p{N}:]",
    "MacAddressRecognizer": r"[0-9a-f]{2}[:-][0-9a-f]{2}|[0-9a-f]{4}\.[0-9a-f]{4}",
    "UuidRecognizer": r"[0-9a-f]{8}-[0-9a-f]{4}",
    "UrlRecognizer": r"\.[a-z]{2}",
}


def offline_tldextract() -> tldextract.TLDExtract:
    """A TLD extractor that uses only the public-suffix snapshot bundled with tldextract.

    ``suffix_list_urls=()`` disables fetching and ``cache_dir=None`` disables the disk cache,
    so construction and every call stay off the network and the file system.
    """
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, validating domains with :func:`offline_tldextract`."""

    def __init__(self, extractor: tldextract.TLDExtract | None = None, **kwargs: Any) -> None:
        self._extractor = extractor or offline_tldextract()
        super().__init__(name="EmailRecognizer", **kwargs)

    def validate_result(self, pattern_text: str) -> bool:
        return bool(self._extractor(pattern_text).fqdn != "")


def _possible_lengths(meta: Any) -> list[int]:
    desc = getattr(meta, "general_desc", None)
    return [n for n in getattr(desc, "possible_length", ()) if n > 0]


def _min_valid_digits(region: str) -> int:
    """Fewest digits a valid number parsed with default ``region`` can have (national format).

    A valid number's national significant number has a length listed in its region's
    ``general_desc.possible_length`` (phonenumbers ``_number_type_helper``); regions sharing
    the country code (e.g. NANPA) are included because validity is checked against the
    number's own region. An empty list means "unknown": 1, never pruned.
    """
    code = phonenumbers.country_code_for_region(region)
    lengths: list[int] = []
    for other in phonenumbers.region_codes_for_country_code(code):
        possible = _possible_lengths(phonenumbers.PhoneMetadata.metadata_for_region(other))
        lengths.append(min(possible) if possible else 1)
    return min(lengths, default=1)


def _min_international_digits() -> int:
    """Fewest digits (country code + national number) of a valid number in any region."""
    best = 99
    for region in phonenumbers.SUPPORTED_REGIONS:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        possible = _possible_lengths(meta)
        best = min(best, len(str(getattr(meta, "country_code", 1))) + (min(possible) if possible else 1))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        possible = _possible_lengths(phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code))
        best = min(best, len(str(code)) + (min(possible) if possible else 1))
    return best


_NUMBER_CHAR = regex.compile(r"\p{N}")


class PrunedPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer, skipping regions that provably cannot match.

    Presidio runs ``PhoneNumberMatcher`` (leniency VALID) once per region. A valid number
    has at least :func:`_min_valid_digits` digits in national format, and at least
    :func:`_min_international_digits` (6) in international format; the digits all come from
    the text. So when a string has fewer than 6 number characters in total, regions whose
    national minimum exceeds that count are skipped (e.g. ``TCK-20931`` runs only DE), and a
    string with 1-3 digits runs none. Otherwise this is Presidio's loop, unchanged.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(name="PhoneRecognizer", **kwargs)
        self._min_digits = {region: _min_valid_digits(region) for region in self.supported_regions}
        self._international = _min_international_digits()

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                ) -> list[RecognizerResult]:
        digits = len(_NUMBER_CHAR.findall(text))
        regions = self.supported_regions
        if digits < self._international:
            regions = tuple(r for r in regions if self._min_digits[r] <= digits)
        results: list[RecognizerResult] = []
        make_result: Any = self._get_recognizer_result
        for region in regions:  # Presidio PhoneRecognizer.analyze, with ``regions``
            for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=int(self.leniency or 0)):
                try:
                    parsed = phonenumbers.parse(text[match.start:match.end])
                    found = phonenumbers.region_code_for_number(parsed)
                    results.append(make_result(match, text, found, nlp_artifacts))
                except phonenumbers.NumberParseException:
                    results.append(make_result(match, text, region, nlp_artifacts))
        return list(EntityRecognizer.remove_duplicates(results))


class PipelineNlpEngine(SpacyNlpEngine):
    """Presidio NLP engine over a spaCy ``Language`` guard already built (never downloads).

    Tokens without a lemma (blank pipelines have no lemmatizer) use their lower-cased
    text as lemma, so Presidio's context-word scoring works without a trained model.
    """

    def __init__(self, pipeline: Language, ner_model_configuration: NerModelConfiguration | None = None):
        super().__init__(
            models=[{"lang_code": LANGUAGE, "model_name": str(pipeline.meta.get("name", "blank"))}],
            ner_model_configuration=ner_model_configuration,
        )
        self._pipeline = pipeline

    def load(self) -> None:
        self.nlp = {LANGUAGE: self._pipeline}  # type: ignore[assignment]  # Presidio annotates it as None

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        entities = self._get_entities(doc)
        scores = self._get_scores_for_entities(doc)
        entities, scores = self._get_updated_entities(entities, scores)
        return NlpArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=[token.idx for token in doc],
            lemmas=[token.lemma_ or token.lower_ for token in doc],
            nlp_engine=self,
            language=language,
            scores=scores,
        )


class LazyNlpArtifacts(NlpArtifacts):
    """NLP artifacts that run the spaCy pipeline only when first read.

    Pattern recognizers never read artifacts; Presidio's context enhancer reads them only
    for results of recognizers with context words. A string without matches is therefore
    never tokenized.
    """

    def __init__(self, engine: PipelineNlpEngine, text: str, language: str) -> None:
        object.__setattr__(self, "_lazy_source", (engine, text, language))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_lazy_source":
            raise AttributeError(name)
        engine, text, language = self.__dict__["_lazy_source"]
        real = engine.process_text(text, language)
        self.__dict__.update(real.__dict__)
        return self.__dict__[name]


def load_spacy_pipeline(name: str) -> Language:
    """Load an installed spaCy pipeline by package name or directory; never download.

    Raises :class:`PIIError` when the model is not installed (guard runs offline; install
    the model package, e.g. from a wheel, beforehand).
    """
    if Path(name).exists():
        return spacy.load(name)
    if spacy.util.is_package(name):
        return spacy.load(name)
    raise PIIError(f"spaCy model {name!r} is not installed; guard never downloads models")


def _predefined() -> list[EntityRecognizer]:
    return [
        CreditCardRecognizer(),
        UsBankRecognizer(),
        UsLicenseRecognizer(),
        UsItinRecognizer(),
        UsPassportRecognizer(),
        UsSsnRecognizer(),
        NhsRecognizer(),
        CryptoRecognizer(),
        DateRecognizer(),
        OfflineEmailRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        MedicalLicenseRecognizer(),
        MacAddressRecognizer(),
        UuidRecognizer(),
        PrunedPhoneRecognizer(),
        UrlRecognizer(),
    ]


def custom_recognizer(spec: RecognizerSpec) -> PatternRecognizer:
    """A Presidio pattern/deny-list recognizer from a ``[[recognizers]]`` entry."""
    # Presidio annotates these parameters as lists although None is their default.
    optional: dict[str, Any] = {
        "patterns": [Pattern(p.name, p.regex, p.score) for p in spec.patterns] or None,
        "deny_list": list(spec.deny_list) or None,
        "context": list(spec.context) or None,
    }
    return PatternRecognizer(
        supported_entity=spec.entity,
        name=spec.name,
        supported_language=LANGUAGE,
        deny_list_score=spec.deny_list_score,
        **optional,
    )


_WARMUP = (
    "email alice@example.com phone +1 (212) 555-0187 card 4111-1111-1111-1111 ssn 078-05-1120 "
    "iban GB82 WEST 1234 5698 7654 32 ip 10.0.0.1 fe80::1 mac 00:1a:2b:3c:4d:5e "
    "uuid 123e4567-e89b-12d3-a456-426614174000 url https://example.com date 2024-01-31 "
    "+44 20 7946 0958 +49 30 901820 +33 1 23 45 67 89 +972 3 123 4567 +91 22 1234 5678 "
    "+55 11 2345 6789"
)


class Analyzer:
    """Finds PII in one string at a time; thread-safe after construction.

    ``entities`` restricts the predefined recognizers to those producing the named types
    (``None``: all). ``custom`` adds rules-file recognizers. ``pipeline`` is the spaCy
    pipeline (default ``spacy.blank("en")``); ``ner`` adds Presidio's spaCy NER recognizer
    (PERSON, LOCATION, ...) and should only be set for pipelines that produce entities.
    """

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        custom: Sequence[RecognizerSpec] = (),
        pipeline: Language | None = None,
        ner: bool = False,
        ner_configuration: NerModelConfiguration | None = None,
    ) -> None:
        wanted = None if entities is None else frozenset(entities)
        self.nlp_engine = PipelineNlpEngine(pipeline or spacy.blank(LANGUAGE), ner_configuration)
        self.nlp_engine.load()
        recognizers: list[EntityRecognizer] = [
            r for r in _predefined() if wanted is None or wanted & set(r.supported_entities)
        ]
        recognizers += [custom_recognizer(spec) for spec in custom]
        if ner:
            spacy_rec = SpacyRecognizer(
                supported_language=LANGUAGE, supported_entities=self.nlp_engine.get_supported_entities()
            )
            recognizers.append(spacy_rec)
        self.engine = self._engine(recognizers)
        # The reference engine is plain Presidio: the stock phone recognizer instead of the
        # pruned one (the e-mail recognizer stays offline: the stock one fetches a suffix list).
        stock = [PhoneRecognizer() if isinstance(r, PrunedPhoneRecognizer) else r for r in recognizers]
        self.reference = self._engine(stock)
        self.recognizers: tuple[EntityRecognizer, ...] = tuple(recognizers)
        self.entities: list[str] = sorted({e for r in recognizers for e in r.supported_entities})
        triggers: dict[str, Any] = {}
        self._plan: list[tuple[EntityRecognizer, Any]] = []
        for rec in recognizers:
            source = TRIGGERS.get(type(rec).__name__)
            if source is None:
                self._plan.append((rec, None))
                continue
            self._plan.append((rec, triggers.setdefault(source, regex.compile(source, _FLAGS))))
        self._trigger_list = list(triggers.values())
        self.analyze(_WARMUP)

    def _engine(self, recognizers: list[EntityRecognizer]) -> AnalyzerEngine:
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[LANGUAGE])
        return AnalyzerEngine(registry=registry, nlp_engine=self.nlp_engine, supported_languages=[LANGUAGE],
                              default_score_threshold=0)

    def _selected(self, text: str) -> list[EntityRecognizer]:
        hits = {id(t): t.search(text) is not None for t in self._trigger_list}
        return [rec for rec, trig in self._plan if trig is None or hits[id(trig)]]

    def may_contain_pii(self, text: str) -> bool:
        """False only if no recognizer can match anything in ``text``."""
        return bool(self._selected(text))

    def analyze(self, text: str, context: Sequence[str] | None = None) -> list[RecognizerResult]:
        """Presidio results for ``text`` (same as :meth:`analyze_naive`, faster).

        ``context`` are extra context words (guard passes the words of the JSON key that
        holds the string, e.g. ``card_number`` -> ``card``, ``number``); like Presidio's
        own ``context`` argument they can only raise scores.
        """
        selected = self._selected(text)
        if not selected:
            return []
        artifacts = LazyNlpArtifacts(self.nlp_engine, text, LANGUAGE)
        results: list[RecognizerResult] = []
        rec: Any
        for rec in selected:
            found = rec.analyze(text=text, entities=self.entities, nlp_artifacts=artifacts)
            if not found:
                continue
            for r in found:
                meta = r.recognition_metadata if r.recognition_metadata else {}
                meta.setdefault(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY, rec.id)
                meta.setdefault(RecognizerResult.RECOGNIZER_NAME_KEY, rec.name)
                r.recognition_metadata = meta
            results.extend(found)
        if not results:
            return []
        ctx = list(context) if context else None
        results = self.engine._enhance_using_context(text, results, artifacts, selected, ctx)
        by_id = {rec.id: rec for rec in selected}
        results = [r for r in results if r.score >= self._threshold(r, by_id)]
        results = EntityRecognizer.remove_duplicates(results)
        for r in results:
            r.analysis_explanation = None  # type: ignore[assignment]  # as AnalyzerEngine.analyze does
        return results

    def _threshold(self, result: RecognizerResult, by_id: dict[str, EntityRecognizer]) -> float:
        # Mirrors AnalyzerEngine's per-recognizer score_thresholds resolution.
        rec = by_id.get(str((result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY)))
        if rec is None:
            return 0.0
        thresholds = rec.score_thresholds
        value = thresholds.get(result.entity_type, thresholds.get("default"))
        return float(value) if value is not None else 0.0

    def analyze_naive(self, text: str, context: Sequence[str] | None = None) -> list[RecognizerResult]:
        """Plain ``AnalyzerEngine.analyze`` with stock recognizers (what the fast path must equal)."""
        results: list[RecognizerResult] = self.reference.analyze(
            text=text, language=LANGUAGE, context=list(context) if context else None)
        return results


_CAMEL = regex.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_INDEX = regex.compile(r"(\[\d+\]|<json>|<base64>)+$")
_LAST_KEY = regex.compile(r"(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[(\"(?:[^\"\\]|\\.)*\")\])$")


def context_words(path: str) -> tuple[str, ...]:
    """Words of the JSON key holding a leaf: ``$.a.card_number`` -> ``("card", "number")``.

    List indices are skipped (``$.phones[2]`` -> ``("phones",)``).
    """
    trimmed = _INDEX.sub("", path)
    m = _LAST_KEY.search(trimmed)
    if m is None:
        return ()
    key = m.group(1)
    if key is None:
        key = str(json.loads(m.group(2)))
    spaced = _CAMEL.sub(" ", key)
    return tuple(w for w in regex.split(r"[^\p{L}\p{N}]+", spaced.lower()) if w)


def result_key(result: RecognizerResult) -> tuple[str, int, int, float]:
    """A comparable form of a result (for tests and benchmarks)."""
    return (result.entity_type, result.start, result.end, round(result.score, 6))

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
* **One search per recognizer.** After its trigger fired, a pattern recognizer (Presidio's
  ``PatternRecognizer.analyze``, or the IBAN recognizer's own loop) can only produce a result
  where one of its patterns matches. Its patterns are joined into one alternation, compiled
  with the recognizer's own flags and ``regex`` engine; a search that finds nothing means no
  pattern matches anywhere (the same engine decides the same question), and the recognizer
  is skipped without its per-pattern overhead (a timed ``finditer`` per pattern). Patterns
  with back-references or global inline flags, whose meaning would change in an
  alternation, keep their recognizer running on the trigger alone. The rules file's custom
  recognizers (plain ``PatternRecognizer`` objects, deny lists included as a pattern) have no
  trigger but get the same search.
* **One Hyperscan pass** (:mod:`guard.pii.scan.prefilter`, where the ``hyperscan`` wheel is
  installed): every pattern of the predefined recognizers that run Presidio's pattern loop,
  and the joined search of the others, in one database in prefilter mode; one scan of an
  ASCII string reports which patterns *may* match. A recognizer none of whose patterns may
  match is skipped, and only the patterns that may match are run (the date recognizer has 13);
  a joined search the pass reports still decides. Non-ASCII strings, custom recognizers and
  the phone recognizer take the trigger and search above.
* **Presidio's pattern loop without its bookkeeping** (:mod:`guard.pii.scan.patterns`): the
  same matching, scores, validation and de-duplication, without per-match explanations,
  timers and debug logging (guard drops explanations).
* **Lazy NLP artifacts.** Tokenization is only needed for context-word scoring of
  results that exist. Guard passes Presidio artifacts that tokenize on first access, so a
  string with no match is never tokenized.
* **Context scoring per result, tokenizing only when needed.** Presidio's context enhancer
  raises a result's score only when one of its recognizer's context words is a substring of a
  surrounding lemma or of a ``context`` word, and decides each result on its own. With a
  component-less spaCy pipeline (the default) a lemma is a token's lower-cased text, a
  substring of the lower-cased string. So a result whose recognizer's (ASCII) context word is
  in a ``context`` word (the JSON key's words) is raised right away, one with no context word
  in the string or ``context`` stays as it is, and only the rest go to Presidio's enhancer
  (which tokenizes the string and deep-copies just those results); see :meth:`Analyzer._enhance`.
  Any other pipeline, enhancer mode, or a recognizer with its own ``enhance_using_context``,
  always gets the whole enhancer.
* **Phone numbers.** :class:`~guard.pii.phone.PrunedPhoneRecognizer` does the
  region-independent part of Presidio's per-region phone search once per string.
* The supported-entity list and recognizer selection are computed once, not per call.

Results are the recognizer results Presidio's ``AnalyzerEngine.analyze`` would return
for the same string with the same recognizers (``default_score_threshold`` 0); policy
thresholds are applied later by the rules.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer, LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    AbaRoutingRecognizer,
    EmailRecognizer,
    PhoneRecognizer,
    SpacyRecognizer,
)
from spacy.language import Language
from spacy.tokens import Doc

from guard.errors import PIIError
from guard.pii.analysis import context_words as context_words  # re-exported
from guard.pii.phone import PrunedPhoneRecognizer
from guard.pii.rules import RecognizerSpec
from guard.pii.scan import prefilter
from guard.pii.scan.patterns import analyze_patterns, explain, remove_duplicates, supports
from guard.pii.scan.prefilter import Prefilter

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
    "AbaRoutingRecognizer": _DIGIT,
    "UsLicenseRecognizer": _DIGIT,
    "UsItinRecognizer": _DIGIT,
    "UsPassportRecognizer": _DIGIT,
    # Every SSN pattern is one of these digit groupings (\b and validation only narrow it).
    "UsSsnRecognizer": r"\p{N}{5}-\p{N}{4}|\p{N}{3}-\p{N}{6}|\p{N}{3}[- .]\p{N}{2}[- .]\p{N}{4}|\p{N}{9}",
    "NhsRecognizer": _DIGIT,
    "CryptoRecognizer": _DIGIT,
    "DateRecognizer": _DIGIT,
    "IbanRecognizer": _DIGIT,
    "MedicalLicenseRecognizer": _DIGIT,
    "PrunedPhoneRecognizer": _DIGIT,
    "OfflineEmailRecognizer": r"@",
    # IPv4 has a digit before a dot; every IPv6 form is compressed ("::") or has 7 "group:".
    "IpRecognizer": r"\p{N}\.|::|(?:[0-9a-f]{1,4}:){7}",
    "MacAddressRecognizer": r"[0-9a-f]{2}[:-][0-9a-f]{2}|[0-9a-f]{4}\.[0-9a-f]{4}",
    "UuidRecognizer": r"[0-9a-f]{8}-[0-9a-f]{4}",
    "UrlRecognizer": r"\.[a-z]{2}",
}


_UNSAFE_IN_ALTERNATION = regex.compile(r"\\[1-9]|\\g<|\(\?P=|\(\?[a-zA-Z]+\)")
"""Back-references and global inline flags: their meaning changes when patterns are joined."""


def any_pattern(recognizer: EntityRecognizer) -> Any:
    """One compiled alternation of a pattern recognizer's patterns (module docstring), or
    ``None`` when it has none or one cannot be joined safely."""
    patterns = getattr(recognizer, "patterns", None)
    if not patterns or not isinstance(recognizer, PatternRecognizer):
        return None
    sources = [p.regex for p in patterns]
    flags = recognizer.global_regex_flags
    if flags is None or any(_UNSAFE_IN_ALTERNATION.search(source) for source in sources):
        return None
    return regex.compile("|".join(f"(?:{source})" for source in sources), flags)


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

    @property
    def pipeline(self) -> Language:
        return self._pipeline

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


_PREDEFINED = (
    "CreditCardRecognizer", "UsBankRecognizer", "UsLicenseRecognizer", "UsItinRecognizer", "UsPassportRecognizer",
    "UsSsnRecognizer", "NhsRecognizer", "CryptoRecognizer", "DateRecognizer", "EmailRecognizer", "IbanRecognizer",
    "IpRecognizer", "MedicalLicenseRecognizer", "MacAddressRecognizer", "UuidRecognizer", "PhoneRecognizer",
    "UrlRecognizer", "AbaRoutingRecognizer",
)
"""The predefined recognizers guard runs: Presidio's English set, plus ABA routing numbers
(shipped but disabled in Presidio's default configuration)."""


def _predefined() -> list[EntityRecognizer]:
    """Presidio's predefined recognizers *as its registry builds them*, never hand-constructed.

    The registry passes its global regex flags (case-insensitive, multi-line, dot-all) and
    the configured context words to every recognizer; constructing a recognizer directly
    gives the class defaults instead (``IbanRecognizer()`` is case-sensitive, so a lowercase
    IBAN was never found; ``CreditCardRecognizer()`` has the context word ``"cc "``). The
    e-mail and phone recognizers are replaced by guard's offline and pruned subclasses with
    the registry instance's parameters. ``tests/pii/test_engine.py`` compares every
    recognizer with an independently built ``AnalyzerEngine()``.
    """
    registry = RecognizerRegistry()
    presidio_log = logging.getLogger("presidio-analyzer")
    level = presidio_log.level
    presidio_log.setLevel(logging.ERROR)  # one warning per recognizer of another language otherwise
    try:
        registry.load_predefined_recognizers(languages=[LANGUAGE])
    finally:
        presidio_log.setLevel(level)
    stock: dict[str, Any] = {type(r).__name__: r for r in registry.recognizers}
    if "AbaRoutingRecognizer" not in stock:
        stock["AbaRoutingRecognizer"] = AbaRoutingRecognizer(supported_language=LANGUAGE)
    out: list[EntityRecognizer] = []
    for name in _PREDEFINED:
        rec = stock[name]
        if name == "EmailRecognizer":
            rec = OfflineEmailRecognizer(context=rec.context, supported_language=rec.supported_language)
            rec.global_regex_flags = stock[name].global_regex_flags
        elif name == "PhoneRecognizer":
            rec = PrunedPhoneRecognizer(context=rec.context, supported_language=rec.supported_language,
                                        supported_regions=rec.supported_regions, leniency=rec.leniency,
                                        name_regions=False)  # the Analyzer drops explanations
        out.append(rec)
    return out


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
    (``None``: all). ``custom`` adds rules-file recognizers. ``context`` replaces the context
    words of the predefined recognizers of an entity type (``[entities.X] context``). ``pipeline`` is the spaCy
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
        context: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        wanted = None if entities is None else frozenset(entities)
        self.nlp_engine = PipelineNlpEngine(pipeline or spacy.blank(LANGUAGE), ner_configuration)
        self.nlp_engine.load()
        recognizers: list[EntityRecognizer] = [
            r for r in _predefined() if wanted is None or wanted & set(r.supported_entities)
        ]
        for rec in recognizers:  # the rules file's context words replace the recognizer's own
            for entity in rec.supported_entities:
                if context and entity in context:
                    rec.context = list(context[entity])
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
        self._plan: list[tuple[EntityRecognizer, Any, Any]] = []
        for rec in recognizers:
            source = TRIGGERS.get(type(rec).__name__)
            if source is None:  # custom recognizers: plain PatternRecognizers need a pattern match too
                self._plan.append((rec, None, any_pattern(rec) if type(rec) is PatternRecognizer else None))
                continue
            trigger = triggers.setdefault(source, regex.compile(source, _FLAGS))
            self._plan.append((rec, trigger, any_pattern(rec)))
        self._trigger_list = list(triggers.values())
        self._plain_patterns = {id(rec) for rec in recognizers if supports(rec)}
        # The Hyperscan pass covers the joined searches of Presidio's predefined recognizers
        # (reviewed syntax; custom patterns may use ``regex`` extensions PCRE reads otherwise).
        self._prefilter = prefilter.build([self._prefilter_group(rec, trig, exact) for rec, trig, exact in self._plan])
        self._by_pattern = {index for index, (rec, trig, _) in enumerate(self._plan)
                            if trig is not None and supports(rec) and getattr(rec, "patterns", None)
                            and getattr(rec, "global_regex_flags", None) is not None}
        """Plan entries the pass answers pattern by pattern (:meth:`_prefilter_group`)."""
        covered = self._prefilter.covered if self._prefilter is not None else frozenset()
        self._uncovered = [index for index in range(len(self._plan)) if index not in covered]
        """Plan entries the pass does not cover (each decided by its trigger, as without the pass)."""
        # Context-word shortcut (module docstring): only sound when lemmas are lower-cased
        # token text and no recognizer overrides Presidio's recognizer-level enhancement.
        plain = all(type(r).enhance_using_context is EntityRecognizer.enhance_using_context for r in recognizers)
        self._enhancer = self.engine.context_aware_enhancer
        lemma_substring = (type(self._enhancer) is LemmaContextAwareEnhancer
                           and self._enhancer.context_matching_mode == "substring")
        self._context_shortcut = plain and lemma_substring and not self.nlp_engine.pipeline.pipe_names
        self._context_words: dict[str, tuple[str, ...] | None] = {}
        for rec in recognizers:
            words = tuple(w.lower() for w in rec.context or ())
            self._context_words[rec.id] = words if all(w.isascii() for w in words) else None
        self.analyze(_WARMUP)

    def _engine(self, recognizers: list[EntityRecognizer]) -> AnalyzerEngine:
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[LANGUAGE])
        return AnalyzerEngine(registry=registry, nlp_engine=self.nlp_engine, supported_languages=[LANGUAGE],
                              default_score_threshold=0)

    @staticmethod
    def _prefilter_group(rec: EntityRecognizer, trig: Any, exact: Any) -> list[Any]:
        """What the Hyperscan pass answers for a recognizer. For one running Presidio's pattern
        loop (:func:`~guard.pii.scan.patterns.supports`): each of its patterns, compiled alone
        as Presidio compiles it (back-references and global inline flags keep their meaning),
        so only the patterns that may match are run. For another with a joined search: that
        search. Predefined recognizers only (reviewed syntax: custom patterns may use ``regex``
        extensions PCRE reads otherwise); none for the phone one."""
        if trig is None:
            return []
        patterns: list[Pattern] = list(getattr(rec, "patterns", None) or [])
        flags = getattr(rec, "global_regex_flags", None)
        if supports(rec) and patterns and flags is not None:
            return [regex.compile(p.regex, flags) for p in patterns]
        return [exact] if exact is not None else []

    def _selected(self, text: str) -> list[tuple[EntityRecognizer, list[int] | None]]:
        """The recognizers that may find something in ``text``, each with the positions of the
        patterns to run (``None``: all of them)."""
        prefilter = self._prefilter
        if prefilter is not None and prefilter.applies(text):
            return self._prefiltered(text, prefilter)
        hits = {id(t): t.search(text) is not None for t in self._trigger_list}
        return [(rec, None) for rec, trig, exact in self._plan
                if (trig is None or hits[id(trig)]) and (exact is None or exact.search(text) is not None)]

    def _prefiltered(self, text: str, prefilter: Prefilter) -> list[tuple[EntityRecognizer, list[int] | None]]:
        """:meth:`_selected` with one Hyperscan pass deciding which joined searches can match.

        A covered recognizer with a joined search is selected iff that search matches (its
        trigger is a superset of that, ``tests/pii/test_properties.py``); a recognizer covered pattern by
        pattern is skipped when none of its patterns can match, else it takes its trigger as
        before (the recognizer itself finds nothing where no pattern matches). The pass only
        skips searches and recognizers that cannot match; the others run as before.
        """
        candidates = prefilter.candidates(text)
        covered = prefilter.covered
        hits: dict[int, bool] = {}
        out: list[tuple[EntityRecognizer, list[int] | None]] = []
        # Covered entries the pass found nothing for are skipped without a look (in plan order).
        indices = sorted({*candidates, *self._uncovered}) if candidates else self._uncovered
        for index in indices:
            rec, trig, exact = self._plan[index]
            if index in covered:
                positions = candidates.get(index)
                if positions is None:
                    continue  # none of its patterns can match
                if index in self._by_pattern:
                    out.append((rec, sorted(positions)))  # the others cannot match: not run
                elif exact.search(text) is not None:
                    out.append((rec, None))
                continue
            if trig is not None:
                hit = hits.get(id(trig))
                if hit is None:
                    hit = hits[id(trig)] = trig.search(text) is not None
                if not hit:
                    continue
            if exact is None or exact.search(text) is not None:
                out.append((rec, None))
        return out

    def may_contain_pii(self, text: str) -> bool:
        """False only if no recognizer can match anything in ``text``."""
        return bool(self._selected(text))

    def analyze(self, text: str, context: Sequence[str] | None = None) -> list[RecognizerResult]:
        """Presidio results for ``text`` (same as :meth:`analyze_naive`, faster).

        ``context`` are extra context words (guard passes the words of the JSON key that
        holds the string, e.g. ``card_number`` -> ``card``, ``number``); like Presidio's
        own ``context`` argument they can only raise scores.
        """
        plan = self._selected(text)
        if not plan:
            return []
        selected = [rec for rec, _ in plan]
        artifacts = LazyNlpArtifacts(self.nlp_engine, text, LANGUAGE)
        results: list[RecognizerResult] = []
        rec: Any
        for rec, positions in plan:
            if id(rec) in self._plain_patterns:
                found = analyze_patterns(rec, text, positions)
            else:
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
        if not self._context_shortcut:
            explain(results)
            results = self.engine._enhance_using_context(text, results, artifacts, selected, ctx)
        else:
            self._enhance(text, results, artifacts, selected, ctx)
        by_id = {rec.id: rec for rec in selected}
        results = [r for r in results if r.score >= self._threshold(r, by_id)]
        results = remove_duplicates(results)
        for r in results:
            r.analysis_explanation = None  # type: ignore[assignment]  # as AnalyzerEngine.analyze does
        return results

    def _enhance(self, text: str, results: list[RecognizerResult], artifacts: NlpArtifacts,
                 selected: list[EntityRecognizer], ctx: list[str] | None) -> None:
        """Presidio's context enhancement of ``results``, in place, tokenizing only when needed.

        Equal to ``AnalyzerEngine._enhance_using_context`` under :attr:`_context_shortcut`
        (plain recognizers, a component-less pipeline, the lemma enhancer in substring mode):
        the recognizer-level step returns every recognizer's results unchanged and in
        recognizer order (the order they were found in), and
        ``LemmaContextAwareEnhancer.enhance_using_context`` decides each result on its own by
        whether a context word of its recognizer is a substring of a surrounding lemma or of a
        ``context`` word. Per result:

        * a recognizer without context words: unchanged (Presidio skips it);
        * an (ASCII) context word inside a lower-cased ``context`` word: raised, whatever the
          surrounding lemmas (Presidio appends ``context`` to them), without tokenizing. A
          span of spaces only goes to Presidio instead (its token search may raise there);
        * no context word in the lower-cased text (every lemma of a component-less pipeline
          is a lower-cased token, a substring of it) nor in ``context``: unchanged;
        * otherwise (or non-ASCII context words): Presidio's enhancer decides, on just those
          results (its ``deepcopy`` then copies only them).

        The score update is Presidio's (add the similarity factor, at least the minimum score
        with context, at most 1). The results' explanations are not updated (guard drops them).
        """
        enhancer = self._enhancer
        lowered = [c.lower() for c in ctx] if ctx else []
        text_lower: str | None = None
        pending: list[int] = []
        for index, r in enumerate(results):
            meta = r.recognition_metadata or {}
            words = self._context_words.get(str(meta.get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY)), ())
            if words is None:
                pending.append(index)
                continue
            if not words or meta.get(RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY):
                continue
            if any(w in c.lower() for w in words for c in lowered) and text[r.start:r.end].strip(" "):
                score = r.score + enhancer.context_similarity_factor
                score = max(score, enhancer.min_score_with_context_similarity)
                r.score = min(score, ContextAwareEnhancer.MAX_SCORE)
                continue
            if text_lower is None:
                text_lower = text.lower()
            if any(w in text_lower for w in words) or any(w in c.lower() for w in words for c in lowered):
                pending.append(index)
        if pending:
            raw = [results[i] for i in pending]
            explain(raw)
            enhanced = enhancer.enhance_using_context(
                text=text, raw_results=raw, nlp_artifacts=artifacts,
                recognizers=selected, context=ctx)
            for index, result in zip(pending, enhanced, strict=True):
                results[index] = result

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


def result_key(result: RecognizerResult) -> tuple[str, int, int, float]:
    """A comparable form of a result (for tests and benchmarks)."""
    return (result.entity_type, result.start, result.end, round(result.score, 6))

"""The analyzer: offline, equal to plain Presidio, custom recognizers, optional NER."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.errors import PIIError
from guard.pii.analysis import _context_words_regex, context_words
from guard.pii.engine import Analyzer, load_spacy_pipeline, offline_tldextract, result_key
from guard.pii.rules import PatternSpec, RecognizerSpec
from tests.pii.conftest import ROOT
from tests.pii.corpus import load_corpus

NO_NETWORK = textwrap.dedent("""
    import sys
    BLOCKED = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
               "socket.sendto", "urllib.Request", "http.client.connect")
    touched = []
    def hook(event, args):
        if event in BLOCKED:
            raise RuntimeError(f"network access attempted: {event}")
        if event in ("os.mkdir", "open") and args and "tldextract" in str(args[0]):
            touched.append(str(args[0]))
    sys.addaudithook(hook)
    from guard.pii.engine import Analyzer
    a = Analyzer()
    found = {r.entity_type for r in a.analyze(
        "mail alice@example.com or bob@mail.example.co.uk, call +1 (212) 555-0187, https://example.org")}
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "URL"} <= found, found
    assert "EMAIL_ADDRESS" not in {r.entity_type for r in a.analyze("x@y.invalidtld")}, "suffix list unused"
    writes = [p for p in touched if ".cache" in p]
    assert not writes, writes
    print("offline ok")
""")


def test_analyzer_never_opens_a_socket() -> None:
    # A fresh interpreter with an audit hook that raises on any network use, installed
    # before guard, Presidio, spaCy or tldextract are imported.
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "offline ok" in proc.stdout


def test_email_validation_in_process_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    extractor = offline_tldextract()
    assert extractor("alice@example.co.uk").fqdn == "example.co.uk"
    analyzer = Analyzer(entities={"EMAIL_ADDRESS"})
    assert [r.entity_type for r in analyzer.analyze("alice@example.co.uk")] == ["EMAIL_ADDRESS"]


def _leaves(value: object) -> list[str]:
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except ValueError:
            return [value]
        return _leaves(doc) if isinstance(doc, dict | list) else [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in _leaves(v)]
    return []


def test_fast_path_equals_plain_presidio_on_the_corpus(full_analyzer: Analyzer) -> None:
    texts = {s for record in load_corpus() for s in _leaves(record["message"])}
    assert len(texts) > 100
    for text in texts:
        for ctx in ((), ("phone", "number")):
            fast = sorted(map(result_key, full_analyzer.analyze(text, ctx)))
            naive = sorted(map(result_key, full_analyzer.analyze_naive(text, ctx)))
            assert fast == naive, text


def test_context_words_raise_scores_only(full_analyzer: Analyzer) -> None:
    plain = {(r.entity_type, r.start, r.end): r.score for r in full_analyzer.analyze("212-555-0187")}
    boosted = {(r.entity_type, r.start, r.end): r.score for r in full_analyzer.analyze("212-555-0187", ("phone",))}
    assert plain.keys() <= boosted.keys()
    assert all(boosted[k] >= v for k, v in plain.items())
    assert boosted[("PHONE_NUMBER", 0, 12)] > plain[("PHONE_NUMBER", 0, 12)]


def test_context_words_from_paths() -> None:
    assert context_words("$.result.structuredContent.rows[3].card_number") == ("card", "number")
    assert context_words("$.params.arguments.homePhone") == ("home", "phone")
    assert context_words('$.x["Social Security"]') == ("social", "security")
    assert context_words("$.result.content[0].text<json>[2]") == ("text",)
    long_path = "$." + "x" * 300 + ".homePhone"  # not memoized, same answer
    assert context_words(long_path) == ("home", "phone") == context_words("$.y.homePhone")
    assert context_words("$.y.homePhone") is context_words("$.y.homePhone")  # memoized


def test_custom_recognizers_regex_context_and_deny_list() -> None:
    spec = RecognizerSpec(
        name="employee_id", entity="EMPLOYEE_ID",
        patterns=(PatternSpec("emp", r"\bEMP-\d{6}\b", 0.4),), context=("employee",),
        deny_list=("Project Nightingale",), deny_list_score=0.9,
    )
    analyzer = Analyzer(entities=set(), custom=[spec])
    assert analyzer.entities == ["EMPLOYEE_ID"]
    weak = analyzer.analyze("ref EMP-004211")
    strong = analyzer.analyze("employee EMP-004211")
    assert weak[0].score == pytest.approx(0.4) and strong[0].score == pytest.approx(0.75)
    deny = analyzer.analyze("status of project nightingale?")
    assert [(r.entity_type, r.score) for r in deny] == [("EMPLOYEE_ID", 0.9)]
    assert sorted(map(result_key, analyzer.analyze("employee EMP-004211"))) == \
        sorted(map(result_key, analyzer.analyze_naive("employee EMP-004211")))


def _ruler_pipeline() -> spacy.language.Language:
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([  # type: ignore[attr-defined]
        {"label": "PERSON", "pattern": [{"LOWER": "alice"}, {"LOWER": "johnson"}]},
        {"label": "GPE", "pattern": "Springfield"},
    ])
    return nlp


def test_ner_pipeline_adds_person_and_location() -> None:
    analyzer = Analyzer(entities={"PERSON", "LOCATION"}, pipeline=_ruler_pipeline(), ner=True)
    text = "Alice Johnson moved to Springfield."
    found = {(r.entity_type, text[r.start:r.end]) for r in analyzer.analyze(text)}
    assert found == {("PERSON", "Alice Johnson"), ("LOCATION", "Springfield")}
    assert sorted(map(result_key, analyzer.analyze(text))) == sorted(map(result_key, analyzer.analyze_naive(text)))


def test_ner_model_loaded_by_path_never_downloaded(tmp_path: Path) -> None:
    _ruler_pipeline().to_disk(tmp_path / "ruler")
    nlp = load_spacy_pipeline(str(tmp_path / "ruler"))
    assert "entity_ruler" in nlp.pipe_names
    with pytest.raises(PIIError, match="never downloads"):
        load_spacy_pipeline("en_core_web_sm_not_installed")


def test_blank_pipeline_without_matches_is_never_tokenized(analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = analyzer.nlp_engine.process_text

    def spy(text: str, language: str):  # type: ignore[no-untyped-def]
        calls.append(text)
        return original(text, language)

    monkeypatch.setattr(analyzer.nlp_engine, "process_text", spy)
    assert analyzer.analyze("Build 42 passed in 3 minutes") == []
    assert calls == []
    assert analyzer.analyze("phone +1 (212) 555-0187")
    assert len(calls) == 1


# -- context words of a path: the fast string version equals the regex definition ---------------

_IDENT_KEY = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z")
_path_part = st.one_of(
    _IDENT_KEY.map(lambda k: f".{k}"),
    st.text(max_size=8).map(lambda k: f"[{json.dumps(k)}]"),
    st.integers(0, 99).map(lambda i: f"[{i}]"),
    st.sampled_from(["<json>", "<base64>", "[\u0661]", "[]", "\n", "]", "[", '"]', ".", ".9a", '["a\\"]"]', ".x\n"]),
    st.text(max_size=4),
)


@settings(max_examples=800, deadline=None)
@given(st.lists(_path_part, max_size=6).map(lambda parts: "$" + "".join(parts)))
def test_context_words_equal_the_regex_definition(path: str) -> None:
    assert context_words(path) == _context_words_regex(path)


# -- context scoring is skipped only when it cannot change a score ------------------------------

def test_blank_pipeline_lemmas_are_lower_cased_token_text(analyzer: Analyzer) -> None:
    # The shortcut's premise: with no pipeline components, every lemma Presidio compares
    # with context words is a token's lower-cased text, hence a substring of text.lower().
    text = "Call Alice's PHONE: +1 (212) 555-0187, İstanbul ΣΟΦΊΑ don't"
    artifacts = analyzer.nlp_engine.process_text(text, "en")
    assert artifacts.lemmas == [t.lower_ for t in artifacts.tokens]
    assert all(lemma in text.lower() for lemma in artifacts.lemmas if lemma.isascii())


def test_context_scoring_tokenizes_only_when_a_context_word_occurs_in_the_text(
        analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Presidio's enhancer (and spaCy) runs only for results whose recognizer's context word
    occurs in the text but not in the JSON key's words; a key word decides without tokens."""
    calls: list[str] = []
    enhancer = analyzer._enhancer
    original = enhancer.enhance_using_context
    tokenized: list[str] = []
    process_text = analyzer.nlp_engine.process_text

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["text"])
        return original(*args, **kwargs)

    def tokenize(text: str, language: str) -> Any:
        tokenized.append(text)
        return process_text(text, language)

    monkeypatch.setattr(enhancer, "enhance_using_context", spy)
    monkeypatch.setattr(analyzer.nlp_engine, "process_text", tokenize)
    assert analyzer._context_shortcut
    cases = [("ORD-2024-000981", ("order",), False),          # a phone match, no phone context word
             ("ORD-2024-000981", ("phone",), False),          # context word from the JSON key: no tokens
             ("ORD-2024-000981", ("telephones",), False),     # ... as a substring of a key word
             ("Order ORD-2024-000981 - call us", (), True),   # context word in the text
             ("phone ORD-2024-000981", ("phone",), False),    # both: the key word decides
             ("ref EMP-004211", (), False),                   # custom recognizer, no context word
             ("Staff EMP-004211", (), True),                  # custom recognizer context word
             ("ref EMP-004211", ("staff",), False)]           # ... in the key
    for text, ctx, enhanced in cases:
        calls.clear()
        tokenized.clear()
        fast = sorted(map(result_key, analyzer.analyze(text, ctx)))
        assert bool(calls) is enhanced, text
        assert (text in tokenized) is enhanced, text
        assert fast, text
        assert fast == sorted(map(result_key, analyzer.analyze_naive(text, ctx))), text


def test_context_scoring_always_runs_with_pipeline_components() -> None:
    analyzer = Analyzer(entities={"PHONE_NUMBER", "PERSON"}, pipeline=_ruler_pipeline(), ner=True)
    assert not analyzer._context_shortcut
    text = "Alice Johnson: ORD-2024-000981"
    assert sorted(map(result_key, analyzer.analyze(text))) == sorted(map(result_key, analyzer.analyze_naive(text)))


def _config(rec: Any) -> dict[str, Any]:
    return {
        "entities": list(rec.supported_entities),
        "language": rec.supported_language,
        "flags": getattr(rec, "global_regex_flags", None),
        "patterns": [(p.name, p.regex, p.score) for p in getattr(rec, "patterns", [])],
        "context": list(rec.context or []),
        "deny_list": list(getattr(rec, "deny_list", None) or []),
        "replacement_pairs": getattr(rec, "replacement_pairs", None),
        "regions": getattr(rec, "supported_regions", None),
        "leniency": getattr(rec, "leniency", None),
    }


def test_every_recognizer_is_configured_like_a_registry_built_presidio() -> None:
    """The IBAN case flags defect: guard built ``IbanRecognizer()`` itself (case-sensitive).

    The reference here is a plain ``AnalyzerEngine()`` built by Presidio's own registry in
    this test, sharing no instance with guard's analyzer; guard's e-mail and phone
    recognizers are subclasses and must carry the stock configuration.
    """
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.predefined_recognizers import AbaRoutingRecognizer

    stock_engine = AnalyzerEngine(nlp_engine=Analyzer(entities=["EMAIL_ADDRESS"]).nlp_engine)
    stock = {type(r).__name__: r for r in stock_engine.registry.recognizers}
    stock.setdefault("AbaRoutingRecognizer", AbaRoutingRecognizer())  # disabled in Presidio's default config
    guard = Analyzer()
    assert not {id(r) for r in guard.recognizers} & {id(r) for r in stock.values()}
    aliases = {"OfflineEmailRecognizer": "EmailRecognizer", "PrunedPhoneRecognizer": "PhoneRecognizer"}
    compared = set()
    for rec in guard.recognizers:
        name = aliases.get(type(rec).__name__, type(rec).__name__)
        assert name in stock, name
        assert _config(rec) == _config(stock[name]), name
        compared.add(name)
    assert {"IbanRecognizer", "CreditCardRecognizer", "EmailRecognizer", "PhoneRecognizer"} <= compared


def test_lowercase_iban_is_found_like_presidio_finds_it(full_analyzer: Analyzer) -> None:
    from presidio_analyzer import AnalyzerEngine

    text = "payout to gb82 west 1234 5698 7654 32 please"
    stock = AnalyzerEngine(nlp_engine=full_analyzer.nlp_engine).analyze(text, language="en", entities=["IBAN_CODE"])
    assert [(r.start, r.end) for r in stock] == [(10, 37)]
    assert [(r.entity_type, r.start, r.end) for r in full_analyzer.analyze(text) if r.entity_type == "IBAN_CODE"] == \
        [("IBAN_CODE", 10, 37)]

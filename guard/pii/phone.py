"""Presidio's phone recognizer with the region-independent work done once per string.

Presidio's ``PhoneRecognizer`` runs ``phonenumbers.PhoneNumberMatcher(text, region,
leniency=VALID)`` once for each of its supported regions (US, GB, DE, FR, IL, IN, CA, BR)
and keeps every match. On machine data (timestamps, order numbers, ids) that is most of
guard's analysis time: each region finds the same candidates again and parses them again.

How the matcher works (``phonenumbers/phonenumbermatcher.py``): it searches candidates
with a region-independent pattern, drops slash-dates and time stamps, and for each
candidate calls ``_parse_and_verify`` on the whole candidate and then on inner groups,
decrementing a ``max_tries`` budget after each failure. ``_parse_and_verify`` first runs
region-independent checks (balanced brackets, publication pages, a Latin letter or
currency sign next to the digits) and then ``parse(candidate, region)``; ``parse`` does
region-independent work (viability) before it first reads the region, and the VALID
verification after it depends only on the parsed number and the candidate. So until a
region's matcher finds its first match, every region's matcher takes exactly the same
path, making the same *attempts* (calls that reach the region) in the same order.

:class:`PrunedPhoneRecognizer` therefore:

1. **Probes** once per string: the library's own matcher runs with a stand-in region that
   raises the moment ``parse`` reads it. The attempt is recorded (candidate, offset, the
   remaining ``max_tries``) and treated as a failure, so the probe walks the common path
   to its end. Calls that fail before reading the region fail for every region. A string
   without attempts has no phone number in any region, and costs one pattern search.
2. **Verifies** the attempts per region with the library's ``_parse_and_verify`` (the real
   parse and verification for that region). If none succeeds, the region's matcher finds
   nothing: it takes the probe's path. At the first success, that match is the region's
   first match and a real matcher resumes right after it with the same remaining budget,
   exactly where the region's own matcher would continue. Past the position checks (which
   every attempt passed in the probe) the outcome depends only on the candidate and the
   region, so a candidate repeated in the string is parsed once per region.

   A match of a *whole* candidate (the matcher's first attempt on it) ends where the
   probe's next candidate search starts, so the region's matcher goes on along the probe's
   path: it skips the attempts the probe made inside that candidate (the region returned
   before making them) and verifies the following ones the same way. Its retry budget is
   then larger than the probe's (a match costs no try), which changes nothing as long as
   the probe never ran out; if it did, or the match is an *inner* one (the region's search
   resumes inside the candidate, off the probe's path), a real matcher resumes right after
   the match with the region's exact remaining budget.
3. **Prunes** attempts per region by digit count: a valid number has at least
   :func:`min_valid_digits` digits in national format and at least
   :func:`min_international_digits` (6) with a country code, and parsing reads them from
   the attempt's digits (or letters, which vanity numbers map to digits; the candidate
   pattern admits no phone-context), so an attempt with fewer can be skipped for that
   region without calling the library. This is what makes timestamps cheap: the only
   attempt in ``2024-05-01T10:20:31Z`` is the ``20`` between the colons.
4. **Shares** international attempts between regions: when ``parse(candidate, None)``
   succeeds, the candidate starts with a plus sign followed by a valid country code (with
   no region, ``parse`` accepts nothing else), so ``parse`` takes the same path for every
   default region (the country code, not the region, picks the metadata) and VALID
   verification reads only the parsed number and the candidate: the attempt is verified
   once and its outcome holds for all regions.

5. **Decides plain attempts from metadata**: an attempt made of ASCII digits and the
   separators `` -./()`` only is decided per region by
   :class:`guard.pii.scan.phonevalid.PhoneValidity` (the same steps as ``parse`` plus VALID
   verification, on metadata compiled once; ~10x less CPU than the library's parser), which
   also yields the parsed number for the match. Other attempts (a plus sign, letters,
   extensions, non-ASCII digits) go to the library as before.

6. **Decides international attempts in the probe**: by 4, an international attempt has one
   outcome in every region, so the probe verifies it right away (with a matcher of the first
   supported region) and, when it matches, returns the match as every region's matcher would.
   The probe's path then stays every region's path: the library skips the inner groups of a
   matched candidate and resumes after the match, spending no try, exactly as each region
   does. A region that matched a whole candidate on its own, inside which the probe matched an
   international attempt, would resume elsewhere than the probe; it continues with a real
   matcher (with its exact remaining budget) instead.

7. **Decides plain international attempts from metadata**: a plus sign followed by a plain
   candidate (:func:`guard.pii.scan.phonevalid.plus_digits`) is parsed without a region and
   VALID-verified by :meth:`~guard.pii.scan.phonevalid.PhoneValidity.plus_parse` and
   :meth:`~guard.pii.scan.phonevalid.PhoneValidity.plus_verdict` instead of the library.

Presidio then re-parses every match of every region to name the number's region in the
result's explanation, which guard drops; matches of several regions at the same span give
equal results that ``remove_duplicates`` collapses. The re-parse is therefore done once per
span, and not at all with ``name_regions=False`` (the explanation then names the region searched).

The results are Presidio's, built by Presidio's own code, in Presidio's order. The test
``tests/pii/test_phone.py`` holds this equal to the stock recognizer on generated
timestamps, ids and phone numbers, and trips if the library's internals this relies on
change; if they are missing at run time, the stock loop runs instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import phonenumbers
import regex
from phonenumbers import Leniency, PhoneNumberMatch, PhoneNumberMatcher
from phonenumbers.phonenumberutil import _set_italian_leading_zeros_for_phone_number
from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from guard.pii.scan.patterns import remove_duplicates
from guard.pii.scan.phonevalid import PhoneValidity, plain_digits, plus_digits

_DIGIT_OR_LETTER = regex.compile(r"[\p{N}\p{L}]")
"""What ``parse`` can turn into a digit: numbers (Unicode digits normalize to ASCII) and
letters (vanity numbers: ``1-800-FLOWERS``; U+017F and U+0131 upper-case to ASCII letters)."""


def _possible_lengths(meta: Any) -> list[int]:
    desc = getattr(meta, "general_desc", None)
    return [n for n in getattr(desc, "possible_length", ()) if n > 0]


def min_valid_digits(region: str) -> int:
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


def min_international_digits() -> int:
    """Fewest digits (country code + national number) of a valid number in any region.

    National-prefix transform rules that insert digits (San Marino ``0549``, Norfolk Island
    ``3``, Madagascar ``20``) only fire on 5-7 digit inputs after a 3-digit country code,
    well above this minimum; ``tests/pii/test_phone.py`` checks every international number
    with fewer digits exhaustively.
    """
    best = 99
    for region in phonenumbers.SUPPORTED_REGIONS:
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        possible = _possible_lengths(meta)
        best = min(best, len(str(getattr(meta, "country_code", 1))) + (min(possible) if possible else 1))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        possible = _possible_lengths(phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code))
        best = min(best, len(str(code)) + (min(possible) if possible else 1))
    return best


class _RegionRead(Exception):
    """The probe's stand-in region was read: the attempt depends on the region."""


class _ProbeUnreliable(Exception):
    """The library did not behave as the probe assumes; run the stock loop instead."""


class _StandInRegion:
    """A default region that raises :class:`_RegionRead` on any use (hash, compare, method).

    ``parse`` first uses its region in ``region in SUPPORTED_REGIONS`` (a hash). ``read``
    records the use, so a library version that swallowed the exception is detected.
    """

    def __init__(self) -> None:
        self.read = False

    def _use(self) -> NoReturn:
        self.read = True
        raise _RegionRead

    def __hash__(self) -> int:
        self._use()

    def __eq__(self, other: object) -> bool:
        self._use()

    def __ne__(self, other: object) -> bool:
        self._use()

    def __bool__(self) -> bool:
        self._use()

    def __len__(self) -> int:
        self._use()

    def __str__(self) -> str:
        self._use()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._use()


class _Outer:
    """A candidate the matcher's search loop took (``_extract_match``)."""

    __slots__ = ("matched", "spent", "tries")

    def __init__(self, tries: int) -> None:
        self.tries = tries
        """The remaining ``max_tries`` when the loop took the candidate."""
        self.spent = 0
        """Tries the probe spent on the candidate (set when the probe is done)."""
        self.matched = False
        """Whether the probe matched inside the candidate (a decided international attempt)."""


class _Attempt:
    __slots__ = ("candidate", "decided", "digits", "international", "match", "offset", "outer", "plain", "tries",
                 "whole")

    def __init__(self, candidate: str, offset: int, tries: int, outer: _Outer | None = None,
                 whole: bool = False, validity: PhoneValidity | None = None) -> None:
        self.candidate = candidate
        self.offset = offset
        self.tries = tries
        """The matcher's remaining ``max_tries`` when it made this attempt."""
        self.outer = outer
        """The candidate of the search loop this attempt belongs to."""
        self.whole = whole
        """Whether this is the attempt on that whole candidate (not an inner group)."""
        self.digits = len(_DIGIT_OR_LETTER.findall(candidate))
        """Upper bound on the digits ``parse`` can read from the candidate."""
        plus = plus_digits(candidate) if validity is not None else None
        self.international = (validity.plus_parse(plus) is not None if validity is not None and plus is not None
                              else _international(candidate))
        """Whether the outcome is the same for every default region (module docstring, 4)."""
        self.plain = plain_digits(candidate)
        """The digits of a plain candidate, decided from metadata (module docstring, 5)."""
        self.decided = False
        """Whether the probe verified this (international) attempt itself (module docstring, 6)."""
        self.match: PhoneNumberMatch | None = None
        """The outcome of a decided attempt, the same in every region."""


def _international(candidate: str) -> bool:
    if "+" not in candidate and "\uff0b" not in candidate:  # phonenumbers' _PLUS_CHARS
        return False
    try:
        phonenumbers.parse(candidate, None, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return False
    return True


Verify = Callable[[str, int], "PhoneNumberMatch | None"]
"""``_parse_and_verify`` of a matcher for some region, for region-independent attempts."""


class _Probe(PhoneNumberMatcher):
    """The library's matcher with a region-less parse: records attempts, matches only the
    international attempts it verified (module docstring, 6)."""

    def __init__(self, text: str, leniency: int, max_tries: int, verify: Verify | None = None,
                 validity: PhoneValidity | None = None) -> None:
        self._stand_in = _StandInRegion()
        super().__init__(text, self._stand_in, leniency=leniency, max_tries=max_tries)  # type: ignore[arg-type]
        self._verify = verify
        self._validity = validity
        """Decides whether plain international attempts parse without a region (module docstring, 7)."""
        """Verifies international attempts in the probe (module docstring, 6); ``None``: never."""
        self.decided: list[PhoneNumberMatch] = []
        """The matches of decided attempts, in order (the only matches the probe may return)."""
        self.attempts: list[_Attempt] = []
        self.outers: list[_Outer] = []
        self._outer: _Outer | None = None
        self._whole = False

    def _extract_match(self, candidate: str, offset: int) -> PhoneNumberMatch | None:
        self._outer = _Outer(self._max_tries)
        self.outers.append(self._outer)
        self._whole = True  # the next attempt, if any, is the one on the whole candidate
        return super()._extract_match(candidate, offset)

    def finish(self) -> None:
        """Record the tries spent per candidate (after the probe ran to the end)."""
        for outer, following in zip(self.outers, self.outers[1:], strict=False):
            outer.spent = outer.tries - following.tries
        if self.outers:
            self.outers[-1].spent = self.outers[-1].tries - self._max_tries

    @property
    def exhausted(self) -> bool:
        """Whether the retry budget ran out (the probe may have stopped early)."""
        return bool(self._max_tries <= 0)

    def _parse_and_verify(self, candidate: str, offset: int) -> PhoneNumberMatch | None:
        self._stand_in.read = False
        whole, self._whole = self._whole, False
        try:
            found = super()._parse_and_verify(candidate, offset)
        except _RegionRead:
            attempt = _Attempt(candidate, offset, self._max_tries, self._outer, whole, self._validity)
            self.attempts.append(attempt)
            if attempt.international and self._verify is not None:
                attempt.decided = True
                attempt.match = self._verify(candidate, offset)
                if attempt.match is not None:
                    self.decided.append(attempt.match)
                    if self._outer is not None:
                        self._outer.matched = True
                return attempt.match  # what every region's matcher gets here
            return None
        if found is not None or self._stand_in.read:
            raise _ProbeUnreliable
        return None


def _internals_present() -> bool:
    """Whether phonenumbers has the matcher internals the fast path uses (else: stock loop)."""
    probe = PhoneNumberMatcher("", "US")
    return all(hasattr(probe, name) for name in ("_parse_and_verify", "_search_index", "_max_tries", "text"))


FAST_PATH = _internals_present()
MAX_TRIES = 65535
"""``PhoneNumberMatcher``'s default ``max_tries`` (what Presidio uses)."""


class PrunedPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer: same results, region-independent work done once.

    See the module docstring for why the results equal ``PhoneRecognizer.analyze``.
    """

    def __init__(self, validity: PhoneValidity | None = None, name_regions: bool = True, **kwargs: Any) -> None:
        super().__init__(name="PhoneRecognizer", **kwargs)
        self.name_regions = name_regions
        """Whether to re-parse each match to name its region in the explanation, as Presidio
        does. The region appears nowhere else (not in the score, span or entity type), so
        :class:`guard.pii.engine.Analyzer`, which drops explanations, turns it off."""
        self._min_digits = {region: min_valid_digits(region) for region in self.supported_regions}
        self._international = min_international_digits()
        self._validity = validity or PhoneValidity()
        for region in self.supported_regions:
            self._validity.region(region)  # compile the metadata now, not on the first message

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                ) -> list[RecognizerResult]:
        leniency = int(self.leniency or 0)
        matches: list[tuple[str, list[PhoneNumberMatch]]] = []
        if FAST_PATH and leniency <= Leniency.VALID:
            try:
                matches = self._matches(text, leniency)
            except _ProbeUnreliable:
                matches = self._stock_matches(text, leniency)
        else:
            matches = self._stock_matches(text, leniency)
        results: list[RecognizerResult] = []
        make_result: Any = self._get_recognizer_result
        seen: set[tuple[int, int]] = set()  # equal results of several regions (module docstring)
        for searched, found in matches:  # Presidio PhoneRecognizer.analyze, from here on
            region: str | None = searched  # Presidio reuses its loop variable for the found region
            for match in found:
                if (match.start, match.end) in seen:
                    continue
                seen.add((match.start, match.end))
                if not self.name_regions:
                    results.append(make_result(match, text, region, nlp_artifacts))
                    continue
                try:
                    parsed = phonenumbers.parse(text[match.start:match.end])
                    region = phonenumbers.region_code_for_number(parsed)
                    results.append(make_result(match, text, region, nlp_artifacts))
                except phonenumbers.NumberParseException:
                    results.append(make_result(match, text, region, nlp_artifacts))
        return remove_duplicates(results)

    def _stock_matches(self, text: str, leniency: int, max_tries: int = MAX_TRIES,
                       ) -> list[tuple[str, list[PhoneNumberMatch]]]:
        """Presidio's search: one full matcher per region."""
        return [(region, list(PhoneNumberMatcher(text, region, leniency=leniency, max_tries=max_tries)))
                for region in self.supported_regions]

    def _matches(self, text: str, leniency: int, max_tries: int = MAX_TRIES,
                 ) -> list[tuple[str, list[PhoneNumberMatch]]]:
        """The same matches as :meth:`_stock_matches` (regions without matches left out)."""
        verifier: list[PhoneNumberMatcher] = []

        def verify(candidate: str, offset: int) -> PhoneNumberMatch | None:
            plus = plus_digits(candidate) if leniency == Leniency.VALID else None
            if plus is not None:
                return self._plus_match(candidate, offset, plus)
            if not verifier:
                verifier.append(PhoneNumberMatcher(text, self.supported_regions[0], leniency=leniency))
            match: PhoneNumberMatch | None = verifier[0]._parse_and_verify(candidate, offset)
            return match

        try:
            probe = _Probe(text, leniency, max_tries, verify if self.supported_regions else None, self._validity)
            for index, match in enumerate(probe):
                if index >= len(probe.decided) or probe.decided[index] is not match:
                    raise _ProbeUnreliable  # only decided attempts match: its parse cannot succeed
        except _RegionRead as exc:  # read outside _parse_and_verify: not the audited matcher
            raise _ProbeUnreliable from exc
        if not probe.attempts:
            return []
        probe.finish()
        failed: set[tuple[str, str | None]] = set()
        shared: dict[tuple[int, str], PhoneNumberMatch] = {}
        out: list[tuple[str, list[PhoneNumberMatch]]] = []
        for region in self.supported_regions:
            found = self._region_matches(text, region, leniency, probe, failed, shared)
            if found:
                out.append((region, found))
        return out

    def _region_matches(self, text: str, region: str, leniency: int, probe: _Probe,
                        failed: set[tuple[str, str | None]], shared: dict[tuple[int, str], PhoneNumberMatch],
                        ) -> list[PhoneNumberMatch]:
        needed = min(self._min_digits[region], self._international)
        verifier: PhoneNumberMatcher | None = None
        found: list[PhoneNumberMatch] = []
        matched: _Outer | None = None  # the candidate this region matched whole
        saved = 0  # tries the probe spent on candidates this region matched (it spent none)
        for attempt in probe.attempts:
            if attempt.outer is matched:
                continue  # the region returned its whole-candidate match before this attempt
            if attempt.decided:  # the probe's own outcome, the region's too: stay on its path
                if attempt.match is not None:
                    found.append(attempt.match)
                continue
            # Past the position checks (which the probe passed), the outcome depends only on
            # the candidate and the region, and for international candidates not on the region.
            key = None if attempt.international else region
            if attempt.digits < needed or (attempt.candidate, key) in failed:
                continue  # provably fails for this region, as the probe's path assumes
            match = shared.get((attempt.offset, attempt.candidate)) if attempt.international else None
            if match is None:
                if attempt.plain is not None and leniency == Leniency.VALID:
                    match = self._plain_match(region, attempt, attempt.plain)
                else:
                    if verifier is None:
                        verifier = PhoneNumberMatcher(text, region, leniency=leniency)
                    match = verifier._parse_and_verify(attempt.candidate, attempt.offset)
                if match is None:
                    failed.add((attempt.candidate, key))
                    continue
                if attempt.international:
                    shared[(attempt.offset, attempt.candidate)] = match
            found.append(match)
            if attempt.whole and attempt.outer is not None and not probe.exhausted and not attempt.outer.matched:
                matched = attempt.outer  # the search resumes where the probe's did: stay on its path
                saved += attempt.outer.spent
                continue
            rest = PhoneNumberMatcher(text, region, leniency=leniency, max_tries=attempt.tries + saved)
            rest._search_index = match.end  # where the region's own matcher continues
            found.extend(rest)
            return found
        return found

    def _plus_match(self, candidate: str, offset: int, digits: str) -> PhoneNumberMatch | None:
        """What ``_parse_and_verify`` returns for a plain international attempt in any region."""
        verdict = self._validity.plus_verdict(digits)
        if verdict is None:
            return None
        country_code, national = verdict
        number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
        _set_italian_leading_zeros_for_phone_number(national, number)
        return PhoneNumberMatch(offset, candidate, number)

    def _plain_match(self, region: str, attempt: _Attempt, digits: str) -> PhoneNumberMatch | None:
        """What ``_parse_and_verify`` returns for a plain attempt, decided from metadata."""
        verdict = self._validity.verdict(region, digits)
        if verdict is None:
            return None
        country_code, national = verdict
        number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
        _set_italian_leading_zeros_for_phone_number(national, number)
        return PhoneNumberMatch(attempt.offset, attempt.candidate, number)

"""Phone-number validity from libphonenumber's metadata, without running its parser per region.

``phonenumbers.PhoneNumberMatcher(text, region, leniency=VALID)`` decides each *attempt* (a
candidate substring that passed the matcher's position checks) with
``parse(candidate, region, keep_raw_input=True)`` followed by VALID verification
(``is_valid_number``, the ``x``-character rule, ``_is_national_prefix_present_if_required``).
That is pure Python, ~20-40 us per region, and Presidio asks it for eight regions on every
digit run of every string.

For a **plain** candidate -- ASCII digits and the separators `` -./()`` only, at most 250
characters, at least 3 digits -- every step of that decision depends on nothing but the
region and the candidate's digit string ``D``:

* ``_build_national_number_for_parsing`` trims leading/trailing punctuation (no
  ``;phone-context``, no ``x`` to start a second number); the candidate is viable (3+
  digits, only valid punctuation); no extension can be split off (every extension pattern
  needs a letter, ``#``, ``~``, ``,`` or ``;``); there is no plus sign, and normalization
  keeps exactly the digits;
* the rest of ``parse`` (international prefix, country code of the default region, national
  prefix and carrier code, length checks, Italian leading zeros) reads only ``D`` and the
  metadata; the national significant number is the stripped digit string itself;
* VALID verification reads the parsed number and ``normalize_digits_only(candidate) == D``;
  the ``x`` rule holds trivially.

:func:`plain_digits` recognizes such candidates, and :class:`PhoneValidity` decides
``(region, D)`` with the same steps written against metadata compiled once (type patterns
grouped per number length, ``re`` patterns compiled up front instead of looked up per
call). It returns the country code and national number of a valid number, or ``None``.
The functions below mirror phonenumbers 9.0's ``parse``, ``_maybe_extract_country_code``,
``_maybe_strip_national_prefix_carrier_code``, ``_test_number_length``,
``is_valid_number`` and ``_is_national_prefix_present_if_required`` step by step (their
names are given at each step); ``tests/pii/test_phonevalid.py`` holds the result equal to
the library's own ``_parse_and_verify`` on generated digit runs of every shape, and
``bench/phone_oracle.py`` does the same over millions.
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, REGION_CODE_FOR_NON_GEO_ENTITY, PhoneMetadata
from phonenumbers.phonenumberutil import _FIRST_GROUP_ONLY_PREFIX_PATTERN

PLAIN_SEPARATORS = " -./()"
"""Characters besides ASCII digits a plain candidate may contain."""
_PLAIN = re.compile(r"[0-9 \-./()]{1,250}")
_NON_DIGIT = re.compile(r"[^0-9]+")
_MIN_LENGTH_FOR_NSN = 2
_MAX_LENGTH_FOR_NSN = 17
_MAX_LENGTH_COUNTRY_CODE = 3
_CAPTURING_DIGIT = re.compile(r"(\d)")

# ValidationResult of ``_test_number_length`` (only the outcomes parse distinguishes).
_POSSIBLE, _LOCAL_ONLY, _TOO_SHORT, _INVALID_LENGTH, _TOO_LONG = range(5)


def plain_digits(candidate: str) -> str | None:
    """The digit string of a plain candidate (see the module docstring), or ``None``."""
    if _PLAIN.fullmatch(candidate) is None:
        return None
    digits = _NON_DIGIT.sub("", candidate)
    return digits if len(digits) >= 3 else None


def plus_digits(candidate: str) -> str | None:
    """The digits after the plus sign of an international plain candidate -- ``+`` then a
    plain candidate, at most 250 characters in all (``parse``'s input limit) -- or ``None``."""
    if len(candidate) > 250 or not candidate.startswith("+"):
        return None
    return plain_digits(candidate[1:])


class _ParseFailed(Exception):
    """Where ``parse`` raises ``NumberParseException``."""


class _Desc:
    """A ``PhoneNumberDesc``: possible lengths and the compiled national-number pattern."""

    __slots__ = ("lengths", "local", "pattern")

    def __init__(self, desc: Any) -> None:
        self.lengths: tuple[int, ...] = tuple(desc.possible_length) if desc is not None else ()
        self.local: tuple[int, ...] = tuple(desc.possible_length_local_only or ()) if desc is not None else ()
        source = getattr(desc, "national_number_pattern", None) if desc is not None else None
        self.pattern: re.Pattern[str] | None = re.compile(source) if source else None

    def matches(self, number: str) -> bool:
        """``_is_number_matching_desc``."""
        if self.lengths and len(number) not in self.lengths:
            return False
        return self.pattern is not None and self.pattern.fullmatch(number) is not None


class _Format:
    __slots__ = ("leading", "pattern", "prefix_optional", "prefix_rule")

    def __init__(self, fmt: Any) -> None:
        leading = fmt.leading_digits_pattern
        self.leading: re.Pattern[str] | None = re.compile(leading[-1]) if leading else None
        self.pattern = re.compile(fmt.pattern)
        self.prefix_rule: str | None = fmt.national_prefix_formatting_rule
        self.prefix_optional = bool(fmt.national_prefix_optional_when_formatting)


class _Region:
    """One region's (or non-geographic entity's) metadata, compiled for the steps below."""

    def __init__(self, meta: Any) -> None:
        self.country_code: int = int(meta.country_code)
        self.idd: re.Pattern[str] = re.compile(meta.international_prefix or "NonMatch")
        self.general = _Desc(meta.general_desc)
        prefix = meta.national_prefix_for_parsing
        self.national_prefix: re.Pattern[str] | None = re.compile(prefix) if prefix else None
        self.transform: str | None = meta.national_prefix_transform_rule or None
        self.leading: re.Pattern[str] | None = re.compile(meta.leading_digits) if meta.leading_digits else None
        same = bool(meta.same_mobile_and_fixed_line_pattern)
        descs = [meta.premium_rate, meta.toll_free, meta.shared_cost, meta.voip, meta.personal_number,
                 meta.pager, meta.uan, meta.voicemail, meta.fixed_line]
        if not same:
            descs.append(meta.mobile)
        self.types = tuple(_Desc(d) for d in descs if d is not None)
        self.formats = tuple(_Format(f) for f in meta.number_format)
        # The type descriptions that admit each length, as one alternation per length: a
        # ``fullmatch`` of the alternation is "some description fully matches".
        self._by_length: dict[int, re.Pattern[str] | None] = {}
        for length in self.general.lengths:
            sources = [f"(?:{d.pattern.pattern})" for d in self.types
                       if d.pattern is not None and (not d.lengths or length in d.lengths)]
            self._by_length[length] = re.compile("|".join(sources)) if sources else None

    def valid_type(self, number: str) -> bool:
        """``_number_type_helper(number, metadata) != UNKNOWN``."""
        if not self.general.matches(number):
            return False
        length = len(number)
        if length not in self._by_length:  # no length list in the general description: one by one
            return any(desc.matches(number) for desc in self.types)
        combined = self._by_length[length]
        return combined is not None and combined.fullmatch(number) is not None

    def length(self, number: str) -> int:
        """``_test_number_length(number, metadata)`` for type UNKNOWN (the general description)."""
        lengths = self.general.lengths
        actual = len(number)
        if actual in self.general.local:
            return _LOCAL_ONLY
        if not lengths:
            return _INVALID_LENGTH
        if lengths[0] == actual:
            return _POSSIBLE
        if lengths[0] > actual:
            return _TOO_SHORT
        if lengths[-1] < actual:
            return _TOO_LONG
        return _POSSIBLE if actual in lengths[1:] else _INVALID_LENGTH

    def strip_national_prefix(self, number: str) -> tuple[str, bool]:
        """``_maybe_strip_national_prefix_carrier_code`` (the carrier code is not needed)."""
        prefix = self.national_prefix
        if not number or prefix is None:
            return number, False
        match = prefix.match(number)
        if match is None:
            return number, False
        viable_original = self._general_match(number)
        groups = match.groups()
        if self.transform is None or groups[len(groups) - 1] is None:
            if viable_original and not self._general_match(number[match.end():]):
                return number, False
            return number[match.end():], True
        transformed = prefix.sub(self.transform, number, count=1)
        if viable_original and not self._general_match(transformed):
            return number, False
        return transformed, True

    def _general_match(self, number: str) -> bool:
        """``_match_national_number(number, general_desc, False)`` (no length check)."""
        pattern = self.general.pattern
        return pattern is not None and pattern.fullmatch(number) is not None

    def choose_format(self, number: str) -> _Format | None:
        """``_choose_formatting_pattern_for_number``."""
        for fmt in self.formats:
            if (fmt.leading is None or fmt.leading.match(number)) and fmt.pattern.fullmatch(number):
                return fmt
        return None


class PhoneValidity:
    """Decides plain candidates per region exactly as phonenumbers' VALID matcher does."""

    def __init__(self) -> None:
        self._regions: dict[str, _Region] = {}
        self._non_geo: dict[int, _Region] = {}
        self._calling: dict[int, _CallingCode] = {}

    def region(self, code: str) -> _Region:
        compiled = self._regions.get(code)
        if compiled is None:
            meta = PhoneMetadata.metadata_for_region(code, None)
            if meta is None:
                raise KeyError(code)
            compiled = self._regions[code] = _Region(meta)
        return compiled

    def _for_calling_code(self, country_code: int, region_code: str) -> _Region | None:
        """``PhoneMetadata.metadata_for_region_or_calling_code``."""
        if region_code == REGION_CODE_FOR_NON_GEO_ENTITY:
            compiled = self._non_geo.get(country_code)
            if compiled is None:
                meta = PhoneMetadata.metadata_for_nongeo_region(country_code, None)
                if meta is None:
                    return None
                compiled = self._non_geo[country_code] = _Region(meta)
            return compiled
        try:
            return self.region(region_code)
        except KeyError:
            return None

    def verdict(self, region_code: str, digits: str) -> tuple[int, str] | None:
        """``(country code, national number)`` if a plain candidate with these digits is a
        VALID match for ``region_code``, else ``None``."""
        region = self.region(region_code)
        parsed = self._parse(region, region_code, digits)
        if parsed is None:
            return None
        country_code, national, source_default = parsed
        if not self._is_valid(country_code, national):
            return None
        if source_default and not self._national_prefix_present(country_code, national, digits):
            return None
        return country_code, national

    def plus_parse(self, digits: str) -> tuple[int, str] | None:
        """``parse("+" + plain, None, keep_raw_input=True)`` for an international plain candidate
        with these digits (:func:`plus_digits`): ``(country code, national significant number)``,
        or ``None`` where it raises.

        The candidate starts with the plus sign (kept by ``_extract_possible_number``), so the
        region check passes without a region and ``_maybe_strip_i18n_prefix_and_normalize``
        strips the plus and keeps the digits; ``_maybe_extract_country_code`` then needs more
        than two digits and a known country code among the first three (without one, ``parse``
        retries the digits after the plus with the default region: ``None`` has no metadata, so
        it raises). The rest is :meth:`_parse` after a country code was found, with the metadata
        of that code's main region. The outcome is the same for every default region (the code,
        not the region, picks the metadata).
        """
        if len(digits) <= _MIN_LENGTH_FOR_NSN:
            return None  # TOO_SHORT_AFTER_IDD
        country_code, national = _split_country_code(digits)
        if country_code == 0:
            return None  # INVALID_COUNTRY_CODE
        metadata = self._for_calling_code(country_code, _main_region(country_code))
        if metadata is None:  # parse asserts this cannot happen
            return None
        if len(national) < _MIN_LENGTH_FOR_NSN:
            return None
        potential, _ = metadata.strip_national_prefix(national)
        if metadata.length(potential) not in (_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH):
            national = potential
        if not _MIN_LENGTH_FOR_NSN <= len(national) <= _MAX_LENGTH_FOR_NSN:
            return None
        return country_code, national

    def plus_verdict(self, digits: str) -> tuple[int, str] | None:
        """:meth:`verdict` of an international plain candidate, in any region: the country code
        came with the plus sign, so VALID verification is ``is_valid_number`` alone (no national
        prefix is required, no ``x`` occurs)."""
        parsed = self.plus_parse(digits)
        if parsed is None or not self._is_valid(*parsed):
            return None
        return parsed

    # -- parse -------------------------------------------------------------------------------

    def _parse(self, region: _Region, region_code: str, digits: str) -> tuple[int, str, bool] | None:
        """``parse(candidate, region, keep_raw_input=True)``: (country code, national
        significant number, whether the country code came from the default region), or
        ``None`` where parse raises."""
        try:
            extracted = self._extract_country_code(region, digits)
        except _ParseFailed:
            return None
        metadata: _Region | None = region
        if extracted is None:
            country_code, national, source_default = region.country_code, digits, True
        else:
            country_code, national = extracted
            source_default = False
            number_region = _main_region(country_code)
            if number_region != region_code:
                metadata = self._for_calling_code(country_code, number_region)
                if metadata is None:  # parse asserts this cannot happen
                    return None
        if len(national) < _MIN_LENGTH_FOR_NSN:
            return None
        assert metadata is not None
        potential, _ = metadata.strip_national_prefix(national)
        if metadata.length(potential) not in (_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH):
            national = potential
        if not _MIN_LENGTH_FOR_NSN <= len(national) <= _MAX_LENGTH_FOR_NSN:
            return None
        return country_code, national, source_default

    def _extract_country_code(self, region: _Region, digits: str) -> tuple[int, str] | None:
        """``_maybe_extract_country_code``: ``(code, rest)`` when a country code was found,
        ``None`` when the default region's applies; :class:`_ParseFailed` where it raises."""
        idd = region.idd.match(digits)
        if idd is not None:
            rest = digits[idd.end():]
            first = _CAPTURING_DIGIT.search(rest)
            if first is None or first.group(1) != "0":  # ``_parse_prefix_as_idd``
                if len(rest) <= _MIN_LENGTH_FOR_NSN:
                    raise _ParseFailed("TOO_SHORT_AFTER_IDD")
                code, national = _split_country_code(rest)
                if code == 0:
                    raise _ParseFailed("INVALID_COUNTRY_CODE")
                return code, national
        own = str(region.country_code)
        if digits.startswith(own):
            potential, _ = region.strip_national_prefix(digits[len(own):])
            if ((not region._general_match(digits) and region._general_match(potential))
                    or region.length(digits) == _TOO_LONG):
                return region.country_code, potential
        return None

    # -- VALID verification ------------------------------------------------------------------

    def _is_valid(self, country_code: int, national: str) -> bool:
        """``is_valid_number``: ``region_code_for_number``, then ``is_valid_number_for_region``."""
        calling = self._calling.get(country_code)
        if calling is None:
            regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
            if regions is None:
                return False
            calling = self._calling[country_code] = _CallingCode(self, country_code, regions)
        chosen = calling.region_for(national)
        if chosen is None:
            return False
        metadata = self._for_calling_code(country_code, chosen)
        if metadata is None:
            return False
        if chosen != REGION_CODE_FOR_NON_GEO_ENTITY and country_code != metadata.country_code:
            return False
        return metadata.valid_type(national)

    def _national_prefix_present(self, country_code: int, national: str, digits: str) -> bool:
        """``_is_national_prefix_present_if_required`` for a number whose country code came
        from the default region (raw input digits ``digits``)."""
        try:  # ``metadata_for_region``: none for non-geographic codes (then no prefix is required)
            metadata = self.region(_main_region(country_code))
        except KeyError:
            return True
        fmt = metadata.choose_format(national)
        if fmt is None or not fmt.prefix_rule:
            return True
        if fmt.prefix_optional or _FIRST_GROUP_ONLY_PREFIX_PATTERN.fullmatch(fmt.prefix_rule):
            return True
        return metadata.strip_national_prefix(digits)[1]


class _CallingCode:
    """The regions sharing a country code, for ``region_code_for_number``."""

    def __init__(self, validity: PhoneValidity, country_code: int, regions: tuple[str, ...] | list[str]) -> None:
        self.single: str | None = regions[0] if len(regions) == 1 else None
        # ``_region_code_for_number_from_list`` walks the regions in order: a region with
        # leading digits is chosen when they match, one without when the number is valid
        # there. Runs of regions with leading digits become one alternation, whose first
        # matching branch is the first matching region.
        self.steps: list[tuple[re.Pattern[str] | None, list[str], _Region | None]] = []
        run: list[tuple[str, str]] = []

        def close_run() -> None:
            if run:
                source = "|".join(f"(?P<r{i}>{pattern})" for i, (_, pattern) in enumerate(run))
                self.steps.append((re.compile(source), [code for code, _ in run], None))
                run.clear()

        if self.single is None:
            for code in regions:
                meta = PhoneMetadata.metadata_for_region(code.upper(), None)
                if meta is None:
                    continue
                if meta.leading_digits is not None:
                    run.append((code, meta.leading_digits))
                else:
                    close_run()
                    self.steps.append((None, [code], validity.region(code)))
            close_run()

    def region_for(self, national: str) -> str | None:
        if self.single is not None:
            return self.single
        for leading, codes, region in self.steps:
            if leading is None:
                assert region is not None
                if region.valid_type(national):
                    return codes[0]
                continue
            match = leading.match(national)
            if match is not None:
                for index, code in enumerate(codes):
                    if match.group(f"r{index}") is not None:
                        return code
        return None


def _main_region(country_code: int) -> str:
    """``region_code_for_country_code`` (``ZZ`` for an unknown code)."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    return regions[0] if regions else phonenumbers.UNKNOWN_REGION


def _split_country_code(number: str) -> tuple[int, str]:
    """``_extract_country_code``: the leading 1-3 digits that are a known country code."""
    if not number or number[0] == "0":
        return 0, number
    for size in range(1, min(len(number), _MAX_LENGTH_COUNTRY_CODE) + 1):
        code = int(number[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            return code, number[size:]
    return 0, number

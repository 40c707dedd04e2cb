"""Hypothesis strategies for the strings tool results are full of: timestamps, ids, numbers.

These are what guard's phone shortcut (``guard/pii/phone.py``) is tuned for, so they are what
the equality properties feed it: ISO and local timestamps (with ``+hh:mm`` offsets, which
start international phone candidates), order/ticket numbers, amounts, versions, and real
phone numbers of every region in every format (from phonenumbers' own example numbers),
also mutated so that many are almost-valid.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import phonenumbers
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType


def _examples(regions: list[str]) -> list[str]:
    out: list[str] = []
    kinds = (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE)
    formats = (PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.NATIONAL,
               PhoneNumberFormat.RFC3966)
    for region in regions:
        for kind in kinds:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                out.extend(phonenumbers.format_number(number, fmt) for fmt in formats)
    return sorted(set(out))


PRESIDIO_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")
EXAMPLE_PHONES = _examples(sorted(phonenumbers.SUPPORTED_REGIONS))
PRESIDIO_PHONES = _examples(list(PRESIDIO_REGIONS))

_TIME_FORMATS = ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%d/%m/%Y %H:%M", "%m/%d/%y",
                 "%Y%m%d%H%M%S", "%H:%M", "%H:%M:%S", "%d.%m.%Y", "%Y/%m/%d", "%b %d, %Y %I:%M %p",
                 "%Y-%m-%dT%H:%M:%S.%f"]


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)))
    style = draw(st.integers(0, len(_TIME_FORMATS) + 1))
    if style == len(_TIME_FORMATS):
        offset = timezone(timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60))))
        return moment.replace(tzinfo=offset).isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds"])))
    if style == len(_TIME_FORMATS) + 1:
        return str(int(moment.replace(tzinfo=UTC).timestamp() * draw(st.sampled_from([1, 1000]))))
    return moment.strftime(_TIME_FORMATS[style])


@st.composite
def identifiers(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["TCK", "ORD", "INV", "PO", "EMP", "#", "", "id", "A"]))
    sep = draw(st.sampled_from(["-", "_", "/", " ", "#", "", ".", ":"]))
    number = draw(st.integers(0, 10**14))
    width = draw(st.integers(0, 14))
    parts = [prefix] if prefix else []
    if draw(st.booleans()):
        parts.append(str(draw(st.integers(1990, 2035))))
    parts.append(f"{number:0{width}d}")
    return sep.join(parts)


amounts = st.one_of(
    st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False).map(lambda d: f"${d:,}"),
    st.floats(min_value=0, max_value=1e7, allow_nan=False).map(str),
    st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 300)).map(lambda v: f"v{v[0]}.{v[1]}.{v[2]}"),
)


@st.composite
def mutated_phones(draw: st.DrawFn) -> str:
    """A real number with one edit: changed/dropped/doubled digit, separators, extension."""
    text = draw(st.sampled_from(EXAMPLE_PHONES if draw(st.booleans()) else PRESIDIO_PHONES))
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    edit = draw(st.integers(0, 6))
    if digits and edit == 0:
        i = draw(st.sampled_from(digits))
        text = text[:i] + str(draw(st.integers(0, 9))) + text[i + 1:]
    elif digits and edit == 1:
        i = draw(st.sampled_from(digits))
        text = text[:i] + text[i + 1:]
    elif digits and edit == 2:
        i = draw(st.sampled_from(digits))
        text = text[:i] + text[i] + text[i:]
    elif edit == 3:
        text = text + draw(st.sampled_from([" ext 12", " x123", "#", " / 68", ";ext=7", " ext. 4"]))
    elif edit == 4:
        text = draw(st.sampled_from(["(", "[", "abc", "$", "%", "tel:", "+", "00", "011 "])) + text
    elif edit == 5:
        text = text.replace(" ", draw(st.sampled_from(["-", ".", "", "  ", "/", "\u00a0"])))
    return text


machine_strings = st.one_of(
    timestamps(), identifiers(), amounts, st.sampled_from(PRESIDIO_PHONES), st.sampled_from(EXAMPLE_PHONES),
    mutated_phones(), st.uuids().map(str),
)

_GLUE = st.sampled_from([" ", ", ", "; ", " / ", "\n", "T", "Z ", "-", ":", " call ", " phone: ", " order ",
                         '", "', "abc", " x ", "\u00a0", ""])


@st.composite
def machine_text(draw: st.DrawFn) -> str:
    """A few machine strings glued together as they appear in prose, logs and JSON."""
    parts = draw(st.lists(machine_strings, min_size=1, max_size=4))
    out = parts[0]
    for part in parts[1:]:
        out += draw(_GLUE) + part
    return out

"""Checksum and structure validators: pure functions, no I/O, no Presidio.

"Validators over thresholds" (issue 13): a match that passes its entity type's validator
is protected whatever score the recognizer gave it, because the validator, not the score,
says it is real. :func:`validate` answers for one (normalized) matched text:

* ``True``: the text is a well-formed value of the type (checksum and/or structure);
* ``False``: it is not (a card failing Luhn, an SSN with area 000, a "phone" that is a bare
  run of digits);
* ``None``: the type has no validator strong enough to decide alone (bank account and
  passport numbers, driver licences, dates, ABA routing numbers: a 9-digit order number
  passes the ABA checksum one time in ten). Those need context.

References: ISO/IEC 7812-1 (Luhn), ISO 13616-1:2020 (IBAN, mod 97-10 of ISO 7064), the
ABA routing number check digit (3-7-1 weights), SSA "SSN randomization" (areas 000, 666 and
900-999, group 00 and serial 0000 are never issued), IRS ITIN ranges (9XX-[50-65|70-88|
90-92|94-99]-XXXX), NHS number modulus 11, the DEA registration number check digit,
Base58Check and BIP 173 (bech32) for bitcoin addresses, RFC 5321 / 5322 (e-mail address
syntax, 254 characters), Python's :mod:`ipaddress`, and libphonenumber metadata.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable

import phonenumbers

_NON_DIGIT = re.compile(r"\D")


def digits(text: str) -> str:
    return _NON_DIGIT.sub("", text)


def luhn(number: str) -> bool:
    """ISO/IEC 7812-1 check digit over a string of ASCII digits."""
    if not number.isdigit() or not number.isascii():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def credit_card(text: str) -> bool:
    """13-19 digits, separated only by single spaces or dashes, passing Luhn, with a card prefix."""
    if re.fullmatch(r"\d+(?:[ -]\d+)*", text) is None:
        return False
    number = digits(text)
    return 13 <= len(number) <= 19 and number[0] in "2345631" and luhn(number)


IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SD": 18,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29,
    "VA": 22, "VG": 24, "XK": 20,
}
"""IBAN lengths per country (ISO 13616 registry, release 2024)."""


def iban(text: str) -> bool:
    """ISO 13616: known country, its length, mod 97 == 1 (case-insensitive, spaces/dashes allowed)."""
    value = re.sub(r"[ -]", "", text).upper()
    if not value.isascii() or not value.isalnum() or len(value) < 15:
        return False
    if IBAN_LENGTHS.get(value[:2]) != len(value) or not value[2:4].isdigit():
        return False
    rearranged = value[4:] + value[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def aba_routing(text: str) -> bool:
    """ABA routing number: 9 digits, a Federal Reserve prefix, 3-7-1 check digit."""
    number = digits(text)
    if len(number) != 9 or re.fullmatch(r"\d{9}|\d{4}-\d{4}-\d", text) is None:
        return False
    prefix = int(number[:2])
    if not (prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80):
        return False
    d = [int(c) for c in number]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


_SSN = re.compile(r"(\d{3})([- ]?)(\d{2})\2(\d{4})")
_SSN_NEVER = frozenset({"078051120", "219099999", "457555462", "123456789"})
"""Published or advertising numbers the SSA voided, and the sequence everyone uses in examples."""


def ssn_number(text: str) -> bool:
    """SSA rules on the digits: area not 000/666/900-999, group not 00, serial not 0000."""
    m = _SSN.fullmatch(text)
    if m is None:
        return False
    area, group, serial = m.group(1), m.group(3), m.group(4)
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_NEVER


def us_ssn(text: str) -> bool:
    """A valid SSN written in the SSN format (``123-45-6789`` or ``123 45 6789``); bare digits need context."""
    m = _SSN.fullmatch(text)
    return m is not None and m.group(2) != "" and ssn_number(text)


def us_itin(text: str) -> bool:
    """IRS ITIN ranges, written with separators (``9XX-7X-XXXX``)."""
    m = re.fullmatch(r"9(\d{2})([- ])(\d{2})\2(\d{4})", text)
    if m is None:
        return False
    middle = int(m.group(3))
    return 50 <= middle <= 65 or 70 <= middle <= 88 or 90 <= middle <= 92 or 94 <= middle <= 99


def uk_nhs(text: str) -> bool:
    """NHS number: 10 digits written 3-3-4 with spaces or dashes, modulus 11 check digit."""
    if re.fullmatch(r"\d{3}([ -])\d{3}\1\d{4}", text) is None:
        return False
    d = [int(c) for c in digits(text)]
    check = 11 - sum(x * w for x, w in zip(d[:9], range(10, 1, -1), strict=True)) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == d[9]


def dea(text: str) -> bool:
    """DEA registration number: two letters, seven digits, check digit."""
    m = re.fullmatch(r"([A-Za-z]{2})(\d{7})", text)
    if m is None:
        return False
    d = [int(c) for c in m.group(2)]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32(text: str) -> bool:
    value = text.lower()
    if value != text and text.upper() != text:
        return False
    hrp, sep, data = value.rpartition("1")
    if not sep or hrp not in ("bc", "tb") or len(data) < 6 or any(c not in _BECH32 for c in data):
        return False
    values = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + [_BECH32.index(c) for c in data]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= g if (top >> i) & 1 else 0
    return chk in (1, 0x2BC830A3)  # bech32, bech32m


def bitcoin(text: str) -> bool:
    """Base58Check (P2PKH/P2SH) or bech32/bech32m (BIP 173/350) bitcoin address."""
    if text[:3].lower() in ("bc1", "tb1"):
        return _bech32(text)
    if not 25 <= len(text) <= 35 or any(c not in _B58 for c in text):
        return False
    n = 0
    for c in text:
        n = n * 58 + _B58.index(c)
    raw = n.to_bytes(25, "big") if n.bit_length() <= 200 else b""
    return len(raw) == 25 and hashlib.sha256(hashlib.sha256(raw[:21]).digest()).digest()[:4] == raw[21:]


def mac_address(text: str) -> bool:
    """Six hex octets with one consistent separator, or Cisco's three dotted groups; not all zero."""
    if re.fullmatch(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}", text) is None and \
            re.fullmatch(r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}", text) is None:
        return False
    return any(c not in "0:-." for c in text)


def ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address as :mod:`ipaddress` parses it (no leading zeros, no ranges)."""
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def email_address(text: str) -> bool:
    """RFC 5321/5322 dot-atom address: local part <= 64, domain of LDH labels, alphabetic TLD, <= 254."""
    local, at, domain = text.rpartition("@")
    if not at or len(text) > 254 or len(local) > 64 or _LOCAL.fullmatch(local) is None:
        return False
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    tld = labels[-1]
    return len(tld) >= 2 and (tld.isalpha() or tld.lower().startswith("xn--"))


_NANP = re.compile(r"(?:\+?1[ .-]?)?(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}")
_GROUPED = re.compile(r"\+?\(?\d+\)?(?:[ .\-/]\(?\d+\)?){1,6}")
_PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")


def phone_number(text: str) -> bool:
    """A number libphonenumber calls valid, written as people write phone numbers.

    International form (``+`` or ``00`` and a country code) valid for its country; or the
    North American format ``(212) 555-0187`` / ``212-555-0187``; or a national number of a
    Presidio region written in groups, with its trunk prefix or its area code in brackets
    (``020 7946 0958``, ``(11) 2345-6789``). A bare run
    of digits or a ``2024-000981`` style serial is not accepted alone (it needs context).
    """
    value = text.strip()
    if value.startswith(("+", "00")):
        candidate = "+" + value[2:] if value.startswith("00") else value
        try:
            return bool(phonenumbers.is_valid_number(phonenumbers.parse(candidate, None)))
        except phonenumbers.NumberParseException:
            return False
    if _NANP.fullmatch(value):
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(value, "US")):
                return True
        except phonenumbers.NumberParseException:
            pass
    if value.startswith(("0", "(")) and _GROUPED.fullmatch(value) and len(digits(value)) >= 9:
        for region in _PHONE_REGIONS:
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(value, region)):
                    return True
            except phonenumbers.NumberParseException:
                continue
    return False


VALIDATORS: dict[str, Callable[[str], bool]] = {
    "CREDIT_CARD": credit_card,
    "IBAN_CODE": iban,
    "US_SSN": us_ssn,
    "US_ITIN": us_itin,
    "UK_NHS": uk_nhs,
    "MEDICAL_LICENSE": dea,
    "CRYPTO": bitcoin,
    "MAC_ADDRESS": mac_address,
    "IP_ADDRESS": ip_address,
    "EMAIL_ADDRESS": email_address,
    "PHONE_NUMBER": phone_number,
}
"""Entity types whose validator, when it passes, is sufficient on its own."""

STRONG = frozenset({"CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS", "CRYPTO"})
"""Validators structure cannot overrule: a Luhn-valid card under an ``order_id`` key is still
protected. The others (an IP address, a phone number...) stay quiet where the key or label
says "version", "order number", "date" (see :mod:`guard.pii.evidence`)."""


def validate(entity: str, text: str) -> bool | None:
    """``True``/``False`` from the entity type's validator; ``None`` when it has none."""
    check = VALIDATORS.get(entity)
    return None if check is None else check(text)

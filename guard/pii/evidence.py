"""Structure is evidence: what the key, the column header or the label around a match says.

A JSON key (``"phone"``, ``"ssn"``, ``"iban"``), a CSV/TSV/Markdown column header, an
e-mail header name (``From:``, ``Cc:``) or a ``label: value`` / ``label=value`` on the
same line names what a value is, more reliably than Presidio's context words (which look
at any word within a few tokens). :func:`evidence` reads those labels for one match:

* **positive**: a label word names the match's entity type (``tel`` for a phone number,
  ``dob`` for a date): the match is protected even when its pattern is weak or unvalidated;
* **negative**: a label says it is something else (``version``, ``order``, ``invoice``,
  ``timestamp``, ``id``...) and none names the entity type: a match that is only
  *validated* (an IP-shaped version, a phone-shaped order number) stays quiet. A score at
  or above the rule's threshold is never overruled (guard stays a superset of Presidio).

Words are matched case-insensitively after splitting ``camelCase``, ``snake_case`` and
punctuation; a stem of four letters or more also matches inside a word (``homephone``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

POSITIVE: dict[str, frozenset[str]] = {
    "EMAIL_ADDRESS": frozenset({"email", "mail", "from", "to", "cc", "bcc", "reply", "sender", "recipient",
                                "contact", "login", "user", "username"}),
    "PHONE_NUMBER": frozenset({"phone", "tel", "telephone", "mobile", "cell", "cellphone", "fax", "call", "sms",
                               "whatsapp", "contact", "ring", "dial", "dialling", "dialing", "hotline", "landline",
                               "reach"}),
    "CREDIT_CARD": frozenset({"card", "cc", "pan", "credit", "visa", "mastercard", "amex", "payment", "paid"}),
    "IBAN_CODE": frozenset({"iban", "bank", "account", "payout", "wire", "sepa", "transfer"}),
    "US_SSN": frozenset({"ssn", "ssns", "social", "security", "national"}),
    "IP_ADDRESS": frozenset({"ip", "ipv4", "ipv6", "addr", "src", "dst", "source", "remote", "client", "host",
                             "from", "origin", "peer", "sign"}),
    "US_BANK_NUMBER": frozenset({"account", "acct", "bank", "checking", "savings", "debit"}),
    "ABA_ROUTING_NUMBER": frozenset({"routing", "aba", "rtn", "transit"}),
    "US_PASSPORT": frozenset({"passport"}),
    "US_DRIVER_LICENSE": frozenset({"license", "licence", "driver", "drivers", "dl", "permit"}),
    "US_ITIN": frozenset({"itin", "taxpayer", "tax", "tin"}),
    "UK_NHS": frozenset({"nhs"}),
    "CRYPTO": frozenset({"wallet", "btc", "bitcoin", "crypto"}),
    "MAC_ADDRESS": frozenset({"mac", "hardware", "ethernet", "wifi"}),
    "MEDICAL_LICENSE": frozenset({"dea", "medical", "prescriber"}),
    "DATE_TIME": frozenset({"birth", "born", "dob", "birthday", "birthdate"}),
    "EMPLOYEE_ID": frozenset({"employee", "staff"}),
}
"""Label words that name an entity type (in addition to custom recognizers' context words)."""

NEGATIVE = frozenset({
    "version", "ver", "build", "release", "released", "rev", "revision", "kernel", "order", "orders", "invoice",
    "inv", "ticket", "tck", "sku", "tracking", "ref", "reference", "uuid", "guid", "hash", "sha", "checksum",
    "commit", "serial", "sn", "date", "time", "timestamp", "created", "updated", "modified", "opened", "eta",
    "duration", "amount", "price", "total", "cost", "qty", "quantity", "count", "size", "bytes", "port", "id",
    "run", "job", "isbn", "page", "issue", "weight", "coordinates", "latitude", "longitude", "lat", "lon",
    "request", "req", "trace", "span", "session", "pid", "patch", "semver", "v",
})
"""Label words that say a value is machine data, not personal data."""

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^0-9a-z]+")
_LINE_CELL = re.compile(r"[|\t;]|,(?=\S)")
_WORDS_BEFORE = 4
_WINDOW = 48


@functools.lru_cache(maxsize=4096)
def words(label: str) -> tuple[str, ...]:
    """``"homePhone_number"`` -> ``("home", "phone", "number")``."""
    return tuple(w for w in _SPLIT.split(_CAMEL.sub(" ", label[:256]).lower()) if w)


@functools.lru_cache(maxsize=8192)
def _verdict(entity: str, label: tuple[str, ...], extra: frozenset[str]) -> Evidence:
    """What ``label`` says about ``entity`` (cached: keys, headers and labels repeat per message)."""
    if _names(entity, label, extra):
        return _POSITIVE
    return _NEGATIVE if any(w in NEGATIVE for w in label) else NONE


def _names(entity: str, label_words: tuple[str, ...], extra: frozenset[str]) -> bool:
    stems = POSITIVE.get(entity, frozenset()) | extra
    for w in label_words:
        if w in stems:
            return True
        if any(len(s) >= 4 and s in w for s in stems):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Evidence:
    positive: bool
    negative: bool


NONE = Evidence(False, False)
_POSITIVE = Evidence(True, False)
_NEGATIVE = Evidence(False, True)


def evidence(entity: str, key_words: tuple[str, ...], text: str, start: int,
             extra: frozenset[str] = frozenset()) -> Evidence:
    """Evidence for a match of ``entity`` at ``text[start:]`` held under a key with ``key_words``.

    ``extra``: more words naming the type (a custom recognizer's ``context``).
    """
    label = key_words + header_words(text, start) + words_before(text, start)
    if not label:
        return NONE
    return _verdict(entity, label, extra)


def words_before(text: str, start: int) -> tuple[str, ...]:
    """The last few words before ``start`` on its line, within its cell (``label: value``)."""
    line_start = text.rfind("\n", 0, start) + 1
    head = text[max(line_start, start - _WINDOW):start]
    cells = _LINE_CELL.split(head)
    return words(cells[-1])[-_WORDS_BEFORE:] if cells else ()


def header_words(text: str, start: int) -> tuple[str, ...]:
    """The column header above a match in a CSV/TSV/Markdown table (``()`` outside tables)."""
    if "\n" not in text:
        return ()
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line = text[line_start:line_end if line_end >= 0 else len(text)]
    delimiter = next((d for d in ("|", "\t", ",", ";") if d in line), None)
    if delimiter is None:
        return ()
    # The table's first line: walk up over lines holding the same delimiter.
    header_start = line_start
    while header_start > 0:
        previous_start = text.rfind("\n", 0, header_start - 1) + 1
        previous = text[previous_start:header_start - 1]
        if delimiter not in previous:
            break
        header_start = previous_start
    if header_start == line_start:
        return ()
    header_end = text.find("\n", header_start)
    header = _cells(text[header_start:header_end], delimiter)
    if len(header) < 2 or len(header) != len(_cells(line, delimiter)):
        return ()  # not a table: prose with commas, a ragged log
    column = len(_cells(line[:start - line_start], delimiter)) - 1
    if 0 <= column < len(header):
        return words(header[column])
    return ()


def _cells(line: str, delimiter: str) -> list[str]:
    """Split a table line on ``delimiter`` outside double quotes (CSV quoting)."""
    cells: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == delimiter and not quoted:
            cells.append("".join(current))
            current = []
            continue
        current.append(ch)
    cells.append("".join(current))
    if delimiter == "|" and cells and not cells[0].strip():
        cells = cells[1:]  # Markdown rows start with "|"
    return cells

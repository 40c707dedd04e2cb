"""Fake customer records for the bundled demo MCP server.

Every value here is invented but shaped like real personal data, so guard's PII stage has something
realistic to find: phone numbers use the fictional ``555-01xx`` range, e-mail addresses use the
reserved ``example.*`` domains (RFC 2606), card numbers are the well-known issuer *test* numbers
(they pass the Luhn check but can never be charged), and IBANs are the published specimen IBANs
(valid ISO 13616 check digits, no real account behind them).

The store is deliberately tiny and in-memory: one :class:`CustomerStore` per server process, so
a destructive call (``delete_customer``) in one test never leaks into another test's upstream.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypedDict


class CustomerRecord(TypedDict):
    """One customer as the demo service stores and returns it."""

    customer_id: str
    name: str
    email: str
    phone: str
    card_number: str
    iban: str
    address: str
    date_of_birth: str
    notes: str


CUSTOMERS: tuple[CustomerRecord, ...] = (
    {
        "customer_id": "C001",
        "name": "Alice Johnson",
        "email": "alice.johnson@example.com",
        "phone": "+1 (212) 555-0187",
        "card_number": "4111-1111-1111-1111",
        "iban": "GB82 WEST 1234 5698 7654 32",
        "address": "742 Evergreen Terrace, Springfield, IL 62704, USA",
        "date_of_birth": "1984-03-14",
        "notes": "Prefers a call back on +1 (212) 555-0143 after 5pm; VIP since 2019.",
    },
    {
        "customer_id": "C002",
        "name": "Bob Smith",
        "email": "bob.smith@example.org",
        "phone": "+1 (415) 555-0122",
        "card_number": "5555-5555-5555-4444",
        "iban": "DE89 3704 0044 0532 0130 00",
        "address": "1200 Harbor Way, San Francisco, CA 94107, USA",
        "date_of_birth": "1979-11-02",
        "notes": "Disputed a charge in March; escalate to billing@example.org.",
    },
    {
        "customer_id": "C003",
        "name": "Carmen Diaz",
        "email": "carmen.diaz@example.net",
        "phone": "+34 912 555 014",
        "card_number": "3782-822463-10005",
        "iban": "ES91 2100 0418 4502 0005 1332",
        "address": "Calle de Alcala 48, 28014 Madrid, Spain",
        "date_of_birth": "1991-07-23",
        "notes": "Speaks Spanish and English. Card on file expires 09/27.",
    },
    {
        "customer_id": "C004",
        "name": "David Chen",
        "email": "david.chen@example.com",
        "phone": "+1 (646) 555-0199",
        "card_number": "6011-1111-1111-1117",
        "iban": "NL91 ABNA 0417 1643 00",
        "address": "88 Canal Street, Apt 5B, New York, NY 10013, USA",
        "date_of_birth": "1988-01-30",
        "notes": "Asked us to send statements to d.chen.home@example.com instead.",
    },
    {
        "customer_id": "C005",
        "name": "Emma Dubois",
        "email": "emma.dubois@example.fr",
        "phone": "+33 1 55 55 01 42",
        "card_number": "4012-8888-8888-1881",
        "iban": "FR14 2004 1010 0505 0001 3M02 606",
        "address": "12 Rue de Rivoli, 75004 Paris, France",
        "date_of_birth": "1975-05-09",
        "notes": "Requested account closure review; do not call before 10am CET.",
    },
    {
        "customer_id": "C006",
        "name": "Farid Haddad",
        "email": "farid.haddad@example.com",
        "phone": "+1 (312) 555-0164",
        "card_number": "5105-1051-0510-5100",
        "iban": "BE68 5390 0754 7034",
        "address": "455 North Lake Shore Drive, Chicago, IL 60611, USA",
        "date_of_birth": "1969-12-17",
        "notes": "Spouse Nadia Haddad is an authorised contact.",
    },
    {
        "customer_id": "C007",
        "name": "Grace Kim",
        "email": "grace.kim@example.org",
        "phone": "+1 (206) 555-0111",
        "card_number": "4242-4242-4242-4242",
        "iban": "CH93 0076 2011 6238 5295 7",
        "address": "1501 Pike Place, Seattle, WA 98101, USA",
        "date_of_birth": "1996-08-04",
        "notes": "New customer; verified identity by phone on +1 (206) 555-0111.",
    },
    {
        "customer_id": "C008",
        "name": "Henrik Larsen",
        "email": "henrik.larsen@example.dk",
        "phone": "+45 55 55 01 77",
        "card_number": "3566-0020-2036-0505",
        "iban": "IT60 X054 2811 1010 0000 0123 456",
        "address": "Nyhavn 17, 1051 Copenhagen, Denmark",
        "date_of_birth": "1982-02-21",
        "notes": "Travels often; card may be used abroad.",
    },
)
"""The seed records. Never mutated: each :class:`CustomerStore` works on its own deep copy."""


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def matches(record: CustomerRecord, query: str) -> bool:
    """True when ``query`` matches the record's id, name, e-mail, or phone digits.

    Matching is case-insensitive substring search; a query with at least four digits also matches
    the phone number regardless of its punctuation, so ``"2125550187"`` finds Alice.
    """
    needle = query.strip().casefold()
    if not needle:
        return False
    for value in (record["customer_id"], record["name"], record["email"]):
        if needle in value.casefold():
            return True
    digits = _digits(needle)
    return len(digits) >= 4 and digits in _digits(record["phone"])


@dataclass
class Message:
    """One message accepted by ``send_message`` (kept in the outbox, never delivered)."""

    message_id: str
    to: str
    body: str


@dataclass
class CustomerStore:
    """In-memory customer table plus an outbox; one instance per server process."""

    records: dict[str, CustomerRecord] = field(default_factory=dict)
    outbox: list[Message] = field(default_factory=list)

    @classmethod
    def seeded(cls, seed: Iterable[CustomerRecord] = CUSTOMERS) -> CustomerStore:
        """A store holding deep copies of ``seed`` (the module's :data:`CUSTOMERS` by default)."""
        return cls(records={r["customer_id"]: copy.deepcopy(r) for r in seed})

    def all(self) -> list[CustomerRecord]:
        """Every record, ordered by customer id."""
        return [self.records[k] for k in sorted(self.records)]

    def get(self, customer_id: str) -> CustomerRecord | None:
        """The record with this id (case-insensitive), or ``None``."""
        return self.records.get(customer_id.strip().upper())

    def find(self, query: str) -> list[CustomerRecord]:
        """Records matching ``query`` (see :func:`matches`), ordered by customer id."""
        return [r for r in self.all() if matches(r, query)]

    def delete(self, customer_id: str) -> CustomerRecord | None:
        """Remove and return the record, or ``None`` when there is no such customer."""
        return self.records.pop(customer_id.strip().upper(), None)

    def send(self, to: str, body: str) -> Message:
        """Queue a message in the outbox and return it with a sequential id."""
        message = Message(message_id=f"MSG-{len(self.outbox) + 1:04d}", to=to, body=body)
        self.outbox.append(message)
        return message

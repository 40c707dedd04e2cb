"""Tool results of a requested size for the relay benchmark, with or without personal data.

The upstream (``bench/upstream.py``) answers ``tools/call`` with one of these. They look
like what a CRM or ticketing tool returns: a ``text`` content block holding a JSON list of
records (MCP tools usually serialize their rows as JSON text).

* with PII: customer records, each with an e-mail address and a phone number, and a card
  number on every third record (``card_on_file``), plus free-text notes;
* without PII: support tickets with ids, dates, statuses, order numbers and free text of
  the same shape, so the PII stage walks as many leaves and digits but finds nothing.

Several variants per (size, pii) are built with different values so that nothing
downstream can profit from seeing the very same bytes twice. With a ``tag`` every string
value also ends in that word: the upstream puts a different one in every response
(:func:`unique_tag`), so that no string repeats from call to call and a cache of analysis
results cannot make the PII stage look cheaper than it is on fresh data.
"""

from __future__ import annotations

import json
import random
from typing import Any

FIRST = ["Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Grace", "Hiroshi", "Ines", "Jonas",
         "Katarzyna", "Liam", "Maya", "Nikolai", "Olga", "Pedro", "Quentin", "Rosa", "Samir", "Tanja"]
LAST = ["Johnson", "Rossi", "Novak", "Schmidt", "Garcia", "Okafor", "Lindqvist", "Tanaka", "Dubois",
        "Kowalski", "Moreau", "Silva", "Haddad", "Becker", "Olsen", "Petrov", "Costa", "Weber"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "example.de", "corp.example.co.uk"]
CITIES = ["Lisbon", "Berlin", "Toronto", "Osaka", "Lyon", "Krakow", "Austin", "Porto", "Oslo", "Leeds"]
PLANS = ["free", "starter", "business", "enterprise"]
SUBJECTS = ["Refund request", "Card declined", "Shipping delay", "Login problem", "Invoice copy",
            "Address change", "Feature request", "Plan upgrade", "Data export", "API quota"]
NOTES = [
    "Customer asked about the renewal date and whether the discount still applies next year.",
    "Escalated to the second line after the third failed attempt; waiting for engineering.",
    "Prefers contact in the afternoon. Account manager changed in March, see the handover notes.",
    "Reported that the dashboard loads slowly on Mondays; could not reproduce on our side so far.",
    "Requested a copy of all invoices for the last fiscal year for the audit, sent on Friday.",
    "The order was split into two shipments; the second one left the warehouse yesterday.",
]
CARDS = ["4111 1111 1111 1111", "5500 0000 0000 0004", "3400 0000 0000 009", "6011 0000 0000 0004"]


def _customer(rng: random.Random, i: int) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    record: dict[str, Any] = {
        "id": f"C{10000 + i}",
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}",
        "phone": f"+1 (212) 555-{rng.randint(1000, 9999)}",
        "city": rng.choice(CITIES),
        "plan": rng.choice(PLANS),
        "since": f"20{rng.randint(15, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "notes": rng.choice(NOTES),
    }
    if i % 3 == 0:
        record["card_on_file"] = rng.choice(CARDS)
    return record


def _ticket(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "id": f"TCK-{20000 + i}",
        "subject": rng.choice(SUBJECTS),
        "status": rng.choice(["open", "pending", "closed"]),
        "priority": rng.choice(["low", "normal", "high"]),
        "opened": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                  f"{rng.randint(0, 59):02d}:00Z",
        "order": f"ORD-2024-{rng.randint(100000, 999999)}",
        "region": rng.choice(CITIES),
        "body": rng.choice(NOTES),
    }


TAG_PLACEHOLDER = "UNIQTAG"
"""Stands for the per-call word in a tagged body; :func:`unique_tag` has the same length."""


def unique_tag(n: int) -> str:
    """The ``n``-th per-call word: seven lower-case letters (no digits: no recognizer trigger)."""
    letters = []
    for _ in range(len(TAG_PLACEHOLDER)):
        n, rest = divmod(n, 26)
        letters.append(chr(ord("a") + rest))
    return "".join(letters)


def _tagged(record: dict[str, Any], tag: str | None) -> dict[str, Any]:
    if tag is None:
        return record
    return {k: f"{v} {tag}" if isinstance(v, str) else v for k, v in record.items()}


def result(size: int, pii: bool, variant: int = 0, tag: str | None = None) -> dict[str, Any]:
    """A ``tools/call`` result whose response frame is about ``size`` bytes (at least one record).

    ``tag``: a word appended to every string value (see the module docstring).
    """
    rng = random.Random(size * 1000 + variant * 2 + int(pii))
    make = _customer if pii else _ticket
    records: list[dict[str, Any]] = []
    overhead = len('{"jsonrpc":"2.0","id":1234567,"result":{"content":[{"type":"text","text":""}]}}')
    while True:
        candidate = [*records, _tagged(make(rng, len(records) + variant * 100), tag)]
        text = json.dumps(candidate, separators=(",", ":"))
        if records and len(json.dumps(text)) + overhead > size:
            break
        records = candidate
    text = json.dumps(records, separators=(",", ":"))
    return {"content": [{"type": "text", "text": text}], "isError": False}


def result_json(size: int, pii: bool, variant: int = 0, tag: str | None = None) -> str:
    """:func:`result` serialized compactly (the upstream splices it into its responses)."""
    return json.dumps(result(size, pii, variant, tag), separators=(",", ":"))


def sample_pii_values(size: int, variant: int = 0) -> list[str]:
    """E-mail addresses that appear in a PII-bearing result: a check that guard protected them."""
    records = json.loads(result(size, True, variant)["content"][0]["text"])
    return [r["email"] for r in records]


if __name__ == "__main__":
    for size in (1024, 4096, 16384):
        for pii in (False, True):
            body = result_json(size, pii)
            print(size, pii, len(body) + 40, body[:160])

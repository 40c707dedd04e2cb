"""Writes the labelled PII corpus ``corpus.jsonl``: ``python -m tests.pii.corpus_gen``.

Deterministic (fixed seed): the committed file is what this script writes, and
``tests/pii/test_corpus.py`` checks that. Each record is one realistic MCP message with the
values placed in it and labelled *by construction* (never by an analyzer):

* ``labels``: ``{"entity", "value"}``, ``value`` being the canonical text of what was placed
  (the evasion forms are encodings of it, see ``form``);
* ``shape``: keyed JSON, CSV, Markdown, log lines, e-mail headers, prose, nested / escaped
  JSON, arguments, structural places (``place``) ...;
* ``form``: ``plain`` or the evasion applied to every value of the record;
* ``pii_free``: documents without personal data, full of what looks like it (dates, UUIDs,
  versions, order numbers, timestamps, amounts, hashes).

The hand-written records of the first corpus (``corpus_seed.jsonl``) are included first.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.pii import values as v

HERE = Path(__file__).parent
OUT = HERE / "corpus.jsonl"
SEED_FILE = HERE / "corpus_seed.jsonl"
SEED = 20261202

Label = dict[str, str]

# -- evasions -----------------------------------------------------------------------------------


def _digits(base: int) -> Callable[[str], str]:
    return lambda s: "".join(chr(base + int(c)) if c.isdigit() else c for c in s)


def _insert(char: str) -> Callable[[str], str]:
    def apply(s: str) -> str:
        if len(s) < 4:
            return s
        step = max(2, len(s) // 3)
        return char.join(s[i:i + step] for i in range(0, len(s), step))
    return apply


def _html(s: str) -> str:
    out = s.replace("@", "&#64;").replace("+", "&#43;")
    return "".join(f"&#{ord(c)};" if c.isdigit() and i % 3 == 0 else c for i, c in enumerate(out))


def _percent(s: str) -> str:
    return s.replace("%", "%25").replace("@", "%40").replace("+", "%2B").replace(" ", "%20")


def _json_escape(s: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if c in "@+" or (c.isdigit() and i % 2 == 0) else c
                   for i, c in enumerate(s))


EVASIONS: dict[str, Callable[[str], str]] = {
    "fullwidth": lambda s: "".join(chr(0xFF10 + int(c)) if c.isdigit() else ("\uff20" if c == "@" else c) for c in s),
    "math-digits": _digits(0x1D7CE),
    "arabic-indic": _digits(0x0660),
    "devanagari": _digits(0x0966),
    "zero-width": _insert("\u200b"),
    "zero-width-joiner": _insert("\u2060"),
    "soft-hyphen": _insert("\u00ad"),
    "html-entities": _html,
    "percent": _percent,
    "json-escapes": _json_escape,
}


# -- message builders -----------------------------------------------------------------------


def tool_result(blocks: list[dict[str, Any]], structured: Any = None, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"content": blocks}
    if structured is not None:
        result["structuredContent"] = structured
    result.update(extra)
    return {"jsonrpc": "2.0", "id": 7, "result": result}


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def record(name: str, shape: str, message: dict[str, Any], labels: list[Label], *, form: str = "plain",
           direction: str = "to_client", kind: str = "result", method: str | None = "tools/call",
           tool: str | None = "lookup", place: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "shape": shape, "form": form, "direction": direction, "kind": kind,
                           "method": method, "tool": tool, "message": message, "labels": labels,
                           "pii_free": not labels}
    if place:
        out["place"] = place
    return out


def L(entity: str, value: str) -> Label:  # noqa: N802 - reads like a label
    return {"entity": entity, "value": value}


# -- keyed records ------------------------------------------------------------------------------

KEYS: dict[str, list[str]] = {
    "EMAIL_ADDRESS": ["email", "email_address", "contactEmail", "mail", "e_mail", "owner_email", "billingEmail"],
    "PHONE_NUMBER": ["phone", "phone_number", "mobile", "tel", "contactPhone", "cell", "fax", "home_phone"],
    "CREDIT_CARD": ["card_number", "cc", "pan", "creditCard", "card", "payment_card"],
    "IBAN_CODE": ["iban", "bank_iban", "payout_iban", "IBAN"],
    "US_SSN": ["ssn", "social_security_number", "SSN", "socialSecurity"],
    "IP_ADDRESS": ["ip", "client_ip", "last_login_ip", "remoteAddr", "source_ip"],
    "US_BANK_NUMBER": ["bank_account", "account_number", "acct_no", "checking_account"],
    "ABA_ROUTING_NUMBER": ["routing_number", "aba", "routingNumber"],
    "US_PASSPORT": ["passport", "passport_number", "passportNo"],
    "US_DRIVER_LICENSE": ["driver_license", "dl_number", "driversLicense", "license_number"],
    "US_ITIN": ["itin", "tax_id", "taxpayer_id"],
    "UK_NHS": ["nhs_number", "nhs", "nhsNumber"],
    "CRYPTO": ["btc_wallet", "wallet", "bitcoin_address"],
    "MAC_ADDRESS": ["mac", "mac_address", "device_mac"],
    "MEDICAL_LICENSE": ["dea_number", "dea", "prescriber_dea"],
    "DATE_TIME": ["date_of_birth", "dob", "birthDate", "birthday"],
    "EMPLOYEE_ID": ["employee_id", "staff_id"],
}
MAKERS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL_ADDRESS": v.email, "PHONE_NUMBER": v.phone, "CREDIT_CARD": v.card, "IBAN_CODE": v.iban,
    "US_SSN": lambda r: v.ssn(r, r.choice(["dash", "dash", "space", "plain"])), "IP_ADDRESS":
    lambda r: v.ipv4(r) if r.random() < 0.7 else v.ipv6(r), "US_BANK_NUMBER": v.bank_account,
    "ABA_ROUTING_NUMBER": v.aba_routing, "US_PASSPORT": v.passport, "US_DRIVER_LICENSE": v.driver_license,
    "US_ITIN": v.itin, "UK_NHS": v.nhs, "CRYPTO": v.bitcoin, "MAC_ADDRESS": v.mac, "MEDICAL_LICENSE": v.dea,
    "DATE_TIME": v.dob, "EMPLOYEE_ID": v.employee,
}
COMMON = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS"]
RARE = ["US_BANK_NUMBER", "ABA_ROUTING_NUMBER", "US_PASSPORT", "US_DRIVER_LICENSE", "US_ITIN", "UK_NHS", "CRYPTO",
        "MAC_ADDRESS", "MEDICAL_LICENSE", "DATE_TIME", "EMPLOYEE_ID"]


def pick_entities(rng: random.Random, n: int) -> list[str]:
    out = rng.sample(COMMON, min(n, len(COMMON)))
    while len(out) < n:
        out.append(rng.choice(RARE))
    return out


def filler(rng: random.Random) -> dict[str, Any]:
    return {"customer_id": f"C{rng.randint(1, 9999):04d}", "status": rng.choice(["active", "churned", "trial"]),
            "created_at": f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
                          f"T0{rng.randint(0, 9)}:1{rng.randint(0, 9)}:00Z",
            "plan": rng.choice(["pro", "team", "free"]), "order_id": f"ORD-2024-{rng.randint(0, 999999):06d}",
            "balance": round(rng.uniform(0, 5000), 2)}


def keyed_records(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        rows, labels = [], []
        for _ in range(rng.randint(1, 3)):
            person = v.name(rng)
            row: dict[str, Any] = {"name": person}
            labels.append(L("PERSON", person))
            for entity in pick_entities(rng, rng.randint(2, 4)):
                value = MAKERS[entity](rng)
                row[rng.choice(KEYS[entity])] = value
                labels.append(L(entity, value))
            row.update(filler(rng))
            rows.append(row)
        doc = {"query": rng.choice(["a", "status:active", "vip"]), "count": len(rows), "customers": rows}
        pretty = rng.random() < 0.5
        body = json.dumps(doc, indent=2) if pretty else json.dumps(doc)
        out.append(record(f"keyed record {i}", "json-record", tool_result([text(body)], doc), labels))
    return out


# -- tables, logs, headers, prose -------------------------------------------------------------


def tables(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        entities = pick_entities(rng, rng.randint(2, 4))
        headers = ["id", "name", *[rng.choice(KEYS[e]).replace("_", " ") if rng.random() < 0.5 else KEYS[e][0]
                                   for e in entities], "created"]
        rows, labels = [], []
        for r in range(rng.randint(2, 4)):
            cells = [f"{1000 + r}", v.name(rng)]
            for e in entities:
                value = MAKERS[e](rng)
                cells.append(value)
                labels.append(L(e, value))
            cells.append(f"2024-05-{10 + r:02d}")
            rows.append(cells)
        style = rng.choice(["csv", "markdown", "tsv"])
        if style == "csv":
            lines = [",".join(headers)] + [",".join(f'"{c}"' if "," in c else c for c in row) for row in rows]
        elif style == "tsv":
            lines = ["\t".join(headers)] + ["\t".join(row) for row in rows]
        else:
            lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
        intro = rng.choice(["Export of matching customers:\n\n", "", "Results (page 1):\n"])
        out.append(record(f"{style} table {i}", style, tool_result([text(intro + "\n".join(lines))]), labels))
    return out


def logs(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        lines, labels = [], []
        for _ in range(rng.randint(3, 6)):
            ts = (f"2024-05-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                  f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z")
            req = f"req-{rng.randint(10**7, 10**8)}"
            kind = rng.choice(["login", "payment", "profile", "plain", "plain"])
            if kind == "login":
                e, ip = v.email(rng), v.ipv4(rng)
                lines.append(f"{ts} INFO auth login ok user={e} src={ip} request_id={req}")
                labels += [L("EMAIL_ADDRESS", e), L("IP_ADDRESS", ip)]
            elif kind == "payment":
                c = v.card(rng, "plain")
                lines.append(f"{ts} WARN billing charge declined card={c} amount=129.00 currency=EUR {req}")
                labels.append(L("CREDIT_CARD", c))
            elif kind == "profile":
                p = v.phone(rng)
                lines.append(f'{ts} DEBUG profile update field=phone new_value="{p}" version=3 {req}')
                labels.append(L("PHONE_NUMBER", p))
            else:
                lines.append(f"{ts} INFO http GET /api/v2/orders/{rng.randint(10**5, 10**6)} 200 {rng.randint(3, 90)}ms"
                             f" build=1.{rng.randint(0, 30)}.{rng.randint(0, 9)}.{rng.randint(100, 999)} {req}")
        if not labels:
            e = v.email(rng)
            lines.append(f"2024-05-02T00:00:00Z INFO mail queued to={e}")
            labels.append(L("EMAIL_ADDRESS", e))
        out.append(record(f"log lines {i}", "log", tool_result([text("\n".join(lines))]), labels))
    return out


def mail_headers(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        a, b, c = v.email(rng), v.email(rng), v.email(rng)
        p = v.phone(rng)
        msg = (f"From: {v.name(rng)} <{a}>\nTo: {b}\nCc: {c}\nDate: Tue, 14 May 2024 10:22:31 +0200\n"
               f"Subject: Re: invoice INV-2024-{rng.randint(0, 99999):05d}\n\n"
               f"Hi, please call me back on {p} about the refund.\n")
        out.append(record(f"e-mail headers {i}", "email-headers",
                          tool_result([text(msg)]), [L("EMAIL_ADDRESS", a), L("EMAIL_ADDRESS", b),
                                                     L("EMAIL_ADDRESS", c), L("PHONE_NUMBER", p)]))
    return out


PROSE = [
    ("PHONE_NUMBER", "Reach {n} at {v} before Friday."),
    ("PHONE_NUMBER", "The courier left a note: ring {v} on arrival."),
    ("PHONE_NUMBER", "{n}'s mobile is {v}."),
    ("PHONE_NUMBER", "Customer asked for a call back on {v} after 5pm."),
    ("EMAIL_ADDRESS", "Forward the receipt to {v} and close the ticket."),
    ("EMAIL_ADDRESS", "{n} <{v}> was added to the account."),
    ("CREDIT_CARD", "Refund issued to the card ending in the number {v}."),
    ("CREDIT_CARD", "They paid with {v} (exp 09/27)."),
    ("IBAN_CODE", "Payout goes to {v} on the 1st."),
    ("IBAN_CODE", "Please wire the deposit to IBAN {v}."),
    ("US_SSN", "Verified identity with SSN {v}."),
    ("US_SSN", "{n} (social security number {v}) requested a copy."),
    ("IP_ADDRESS", "Suspicious sign-in from {v} was blocked."),
    ("IP_ADDRESS", "The webhook came from {v}."),
    ("US_BANK_NUMBER", "Direct debit from checking account {v} is active."),
    ("ABA_ROUTING_NUMBER", "Bank routing number {v}, account on file."),
    ("US_PASSPORT", "Passport number {v} was checked at the desk."),
    ("US_DRIVER_LICENSE", "Driver license {v} (California) verified."),
    ("US_ITIN", "Taxpayer ITIN {v} is on the W-7."),
    ("UK_NHS", "NHS number {v} registered with the practice."),
    ("CRYPTO", "Send the refund to bitcoin wallet {v}."),
    ("MAC_ADDRESS", "Device with MAC address {v} joined the network."),
    ("MEDICAL_LICENSE", "Prescriber DEA number {v} on the script."),
    ("DATE_TIME", "{n} was born on {v}."),
    ("DATE_TIME", "Date of birth: {v}"),
    ("EMPLOYEE_ID", "Approved by employee {v}."),
]


def prose(rng: random.Random, count: int, form: str = "plain") -> list[dict[str, Any]]:
    out = []
    encode = EVASIONS.get(form, lambda s: s)
    for i in range(count):
        sentences, labels = [], []
        for entity, template in rng.sample(PROSE, rng.randint(2, 4)):
            value = MAKERS[entity](rng) if entity != "PHONE_NUMBER" else rng.choice([v.phone, v.us_phone])(rng)
            person = v.name(rng)
            sentences.append(template.format(n=person, v=encode(value)))
            labels.append(L(entity, value))
            if "{n}" in template:
                labels.append(L("PERSON", person))
        body = " ".join(sentences)
        shape = "prose"
        if form != "plain":
            wrap = rng.choice(["prose", "json", "log"])
            if wrap == "json" and form != "json-escapes":
                doc = {"note": body, "ticket": f"TCK-{rng.randint(10**4, 10**5)}"}
                body = json.dumps(doc, ensure_ascii=False)
                out.append(record(f"evasion {form} {i}", "json-record", tool_result([text(body)], doc), labels,
                                  form=form))
                continue
            if wrap == "log":
                body = f"2024-05-02T10:00:00Z INFO note {body}"
                shape = "log"
        out.append(record(f"{'prose' if form == 'plain' else 'evasion ' + form} {i}", shape,
                          tool_result([text(body)]), labels, form=form))
    return out


def nested_json(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        e, p, c = v.email(rng), v.phone(rng), v.card(rng)
        inner = {"user": {"email": e, "phone": p}, "payment": {"card": c}}
        depth = rng.choice([1, 2, 3])
        payload: Any = inner
        for _ in range(depth):
            payload = {"event": "signup", "payload": json.dumps(payload)}
        out.append(record(f"nested JSON depth {depth} {i}", "nested-json", tool_result([text(json.dumps(payload))]),
                          [L("EMAIL_ADDRESS", e), L("PHONE_NUMBER", p), L("CREDIT_CARD", c)]))
    for i in range(count // 2):  # escaped JSON fragments inside log text (not parseable as a whole)
        e, s = v.email(rng), v.ssn(rng)
        fragment = json.dumps(json.dumps({"email": e, "ssn": s}))
        out.append(record(f"escaped JSON in a log line {i}", "escaped-json",
                          tool_result([text(f"2024-05-02T10:00:00Z ERROR upstream body={fragment} retry=2")]),
                          [L("EMAIL_ADDRESS", e), L("US_SSN", s)]))
    return out


def base64_runs(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        e, p = v.email(rng), v.phone(rng)
        blob = base64.b64encode(f"Contact: {e}\nPhone: {p}\n".encode()).decode()
        out.append(record(f"base64 inside a string {i}", "base64", tool_result([text(
            f"Attachment contact.vcf (base64): {blob}")]), [L("EMAIL_ADDRESS", e), L("PHONE_NUMBER", p)],
            form="base64", place="base64 in strings"))
    return out


# -- structural places ----------------------------------------------------------------------------


def places(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(3):
        e, p = v.email(rng), v.phone(rng)
        out.append(record(f"initialize instructions {i}", "structural", {"jsonrpc": "2.0", "id": 0, "result": {
            "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
            "serverInfo": {"name": "crm", "version": "1.4.2"},
            "instructions": f"Escalations go to {e} or {p}."}}, [L("EMAIL_ADDRESS", e), L("PHONE_NUMBER", p)],
            method="initialize", tool=None, place="initialize instructions"))
        e = v.email(rng)
        out.append(record(f"server/discover instructions {i}", "structural", {"jsonrpc": "2.0", "id": 0, "result": {
            "supportedVersions": ["2026-07-28"], "capabilities": {}, "serverInfo": {"name": "crm", "version": "2.0.0"},
            "instructions": f"Owner: {e}"}}, [L("EMAIL_ADDRESS", e)], method="server/discover", tool=None,
            place="server/discover instructions"))
        e1, e2, s = v.email(rng), v.email(rng), v.ssn(rng)
        out.append(record(f"tools/list descriptions and schema {i}", "structural", {"jsonrpc": "2.0", "id": 1,
                                                                                    "result": {
            "tools": [{"name": "send_message", "description": f"Sends mail. Default sender is {e1}.",
                       "inputSchema": {"type": "object", "properties": {
                           "to": {"type": "string", "format": "email", "default": e2, "examples": [e2]},
                           "ref": {"type": "string", "description": f"e.g. SSN {s}"}}, "required": ["to"]}}]}},
            [L("EMAIL_ADDRESS", e1), L("EMAIL_ADDRESS", e2), L("US_SSN", s)], method="tools/list", tool=None,
            place="tools/list"))
        e, p, c = v.email(rng), v.phone(rng), v.card(rng)
        out.append(record(f"resources/list {i}", "structural", {"jsonrpc": "2.0", "id": 2, "result": {"resources": [
            {"uri": f"crm://customers/{e}", "name": e, "description": f"Customer, phone {p}",
             "mimeType": "application/json"},
            {"uri": "crm://reports/q2", "name": "Q2 report", "title": f"Refund for card {c}"}]}},
            [L("EMAIL_ADDRESS", e), L("PHONE_NUMBER", p), L("CREDIT_CARD", c)], method="resources/list", tool=None,
            place="resources/list"))
        e = v.email(rng)
        out.append(record(f"resources/templates/list {i}", "structural", {"jsonrpc": "2.0", "id": 3, "result": {
            "resourceTemplates": [{"uriTemplate": "crm://customers/{email}", "name": "customer",
                                   "description": f"e.g. crm://customers/{e}"}]}}, [L("EMAIL_ADDRESS", e)],
            method="resources/templates/list", tool=None, place="resources/templates/list"))
        e, p = v.email(rng), v.phone(rng)
        out.append(record(f"prompts/list {i}", "structural", {"jsonrpc": "2.0", "id": 4, "result": {"prompts": [
            {"name": "follow_up", "description": f"Follow up with {e}",
             "arguments": [{"name": "phone", "description": f"like {p}", "required": False}]}]}},
            [L("EMAIL_ADDRESS", e), L("PHONE_NUMBER", p)], method="prompts/list", tool=None, place="prompts/list"))
        e = v.email(rng)
        out.append(record(f"_meta {i}", "structural", tool_result([text("done")], _meta={"com.example/owner": e}),
                          [L("EMAIL_ADDRESS", e)], place="_meta"))
        p, e = v.phone(rng), v.email(rng)
        out.append(record(f"unknown keys {i}", "structural", tool_result(
            [{"type": "text", "text": "1 match", "note": f"primary contact {e}"}], summary=f"Customer phone {p}"),
            [L("PHONE_NUMBER", p), L("EMAIL_ADDRESS", e)], place="unknown keys"))
        e1, e2, p = v.email(rng), v.email(rng), v.phone(rng, "e164")
        out.append(record(f"object keys {i}", "structural", tool_result([text("2 contacts")], {
            "contacts": {e1: {"status": "active"}, e2: {"status": "bounced"}}, "by_phone": {p: "C0042"}}),
            [L("EMAIL_ADDRESS", e1), L("EMAIL_ADDRESS", e2), L("PHONE_NUMBER", p)], place="JSON object keys"))
        card_digits = v.card_digits(rng)
        ph = v.phone(rng, "e164").lstrip("+")
        out.append(record(f"numbers {i}", "structural", tool_result([text("stored values")], {
            "card": int(card_digits), "phone": int(ph), "count": 3, "amount": 129.5}),
            [L("CREDIT_CARD", card_digits), L("PHONE_NUMBER", ph)], place="JSON numbers"))
        e = v.email(rng)
        out.append(record(f"cancelled reason from server {i}", "structural", {
            "jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9,
                                                                              "reason": f"user {e} went away"}},
            [L("EMAIL_ADDRESS", e)], kind="notification", method="notifications/cancelled", tool=None,
            place="notifications/cancelled reason"))
        e = v.email(rng)
        out.append(record(f"duplicate key {i}", "structural", tool_result(
            [text('{"email": "' + e + '", "email": "hidden"}')]), [L("EMAIL_ADDRESS", e)],
            place="embedded JSON with a duplicate key"))
        p = v.us_phone(rng)
        cut = rng.randint(4, len(p) - 3)
        c = v.card(rng, "space")
        cut2 = rng.randint(5, len(c) - 4)
        out.append(record(f"split over text blocks {i}", "structural", tool_result(
            [text(f"Call {p[:cut]}"), text(f"{p[cut:]} now. Card {c[:cut2]}"), text(f"{c[cut2:]} on file.")]),
            [L("PHONE_NUMBER", p), L("CREDIT_CARD", c)], place="adjacent text blocks"))
        b = v.iban(rng, "lower")
        out.append(record(f"lowercase IBAN {i}", "structural", tool_result([text(f"payout account {b}")]),
                          [L("IBAN_CODE", b)], place="lowercase IBAN"))
    # more message kinds in the server -> client direction
    for i in range(3):
        e, p = v.email(rng), v.phone(rng)
        out.append(record(f"log notification {i}", "positions", {"jsonrpc": "2.0", "method": "notifications/message",
                          "params": {"level": "info", "logger": "crm", "data": {"msg": "lookup", "who": e, "tel": p}}},
                          [L("EMAIL_ADDRESS", e), L("PHONE_NUMBER", p)], kind="notification",
                          method="notifications/message", tool=None))
        e = v.email(rng)
        out.append(record(f"error data {i}", "positions", {"jsonrpc": "2.0", "id": 5, "error": {
            "code": -32001, "message": f"no mailbox for {e}", "data": {"hint": "retry"}}},
            [L("EMAIL_ADDRESS", e)], kind="error"))
        s, c = v.ssn(rng), v.card(rng)
        out.append(record(f"resources/read contents {i}", "positions", {"jsonrpc": "2.0", "id": 6, "result": {
            "contents": [{"uri": "crm://customers/c1", "mimeType": "text/plain", "text": f"SSN {s}; card {c}"}]}},
            [L("US_SSN", s), L("CREDIT_CARD", c)], method="resources/read", tool="crm://customers/c1"))
        e = v.email(rng)
        out.append(record(f"elicitation request {i}", "positions", {"jsonrpc": "2.0", "id": 8, "method":
                          "elicitation/create", "params": {"message": f"Confirm the address {e}?", "requestedSchema": {
                              "type": "object", "properties": {"ok": {"type": "boolean"}}}}},
                          [L("EMAIL_ADDRESS", e)], kind="request", method="elicitation/create", tool=None))
        p = v.phone(rng)
        out.append(record(f"progress message {i}", "positions", {"jsonrpc": "2.0", "method": "notifications/progress",
                          "params": {"progressToken": 1, "progress": 1, "message": f"dialling {p}"}},
                          [L("PHONE_NUMBER", p)], kind="notification", method="notifications/progress", tool=None))
    return out


def client_to_server(rng: random.Random) -> list[dict[str, Any]]:
    """Client -> server messages with values whose shipped ``to_server`` action is ``block``."""
    out = []
    for i in range(4):
        c = v.card(rng)
        out.append(record(f"tool arguments with a card {i}", "arguments", {
            "jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "pay", "arguments": {
                "note": f"charge {c}"}}}, [L("CREDIT_CARD", c)], direction="to_server", kind="request", tool="pay"))
        c = v.card(rng)
        out.append(record(f"client cancel reason {i}", "arguments", {
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 3, "reason": f"wrong card {c}"}},
            [L("CREDIT_CARD", c)], direction="to_server", kind="notification", method="notifications/cancelled",
            tool=None, place="client notifications"))
        s = v.ssn(rng)
        out.append(record(f"client initialized params {i}", "arguments", {
            "jsonrpc": "2.0", "method": "notifications/initialized", "params": {"_meta": {"note": f"ssn {s}"}}},
            [L("US_SSN", s)], direction="to_server", kind="notification", method="notifications/initialized",
            tool=None, place="client notifications"))
    return out


# -- PII-free documents -----------------------------------------------------------------------------


def pii_free(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    makers: list[Callable[[], dict[str, Any]]] = []

    def tickets() -> dict[str, Any]:
        rows = [{"id": f"TCK-{rng.randint(10**4, 10**5)}", "order": f"ORD-2024-{rng.randint(0, 999999):06d}",
                 "opened": f"2024-05-0{rng.randint(1, 9)}T10:2{rng.randint(0, 9)}:31Z", "status": "open",
                 "amount": f"${rng.randint(10, 5000):,}.{rng.randint(0, 99):02d}",
                 "subject": rng.choice(["Refund request", "Card declined", "Shipping delay"])}
                for _ in range(rng.randint(2, 5))]
        return tool_result([text(json.dumps({"tickets": rows}))], {"tickets": rows})

    def build_log() -> dict[str, Any]:
        lines = [f"[{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}] "
                 + rng.choice([f"Installing numpy {rng.randint(1, 2)}.{rng.randint(0, 26)}.{rng.randint(0, 9)}",
                               f"Kernel 5.15.{rng.randint(0, 200)}-{rng.randint(10, 99)}-generic",
                               f"Windows build 10.0.{rng.randint(10000, 22999)}.{rng.randint(100, 4000)}",
                               f"commit {rng.getrandbits(160):040x}",
                               f"kubectl v1.{rng.randint(20, 30)}.{rng.randint(0, 9)} "
                               f"server v1.{rng.randint(20, 30)}.3",
                               f"artifact size {rng.randint(10**5, 10**9)} bytes in "
                               f"{rng.randint(1, 999)}.{rng.randint(0, 999)}s",
                               f"version 2.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)} released",
                               f"listening on port {rng.randint(1024, 65535)}",
                               f"run id {rng.randint(10**9, 10**10)} finished"])
                 for _ in range(rng.randint(4, 8))]
        return tool_result([text("\n".join(lines))])

    def inventory() -> dict[str, Any]:
        rows = ["sku,name,qty,updated,uuid"] + [
            f"SKU-{rng.randint(10000, 99999)}-{rng.choice(['S', 'M', 'XL'])},Widget {i},{rng.randint(0, 900)},"
            f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2024,"
            f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-a{rng.getrandbits(12):03x}"
            f"-{rng.getrandbits(48):012x}" for i in range(rng.randint(3, 6))]
        return tool_result([text("\n".join(rows))])

    def shipping() -> dict[str, Any]:
        doc = {"tracking": f"1Z{rng.randint(100, 999)}AA{rng.randint(10**9, 10**10)}",
               "isbn": f"978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-"
                       f"{rng.randint(0, 9)}",
               "eta": f"{rng.randint(1, 28)}.{rng.randint(1, 12)}.2024", "weight_kg": rng.randint(1, 40),
               "invoice": f"INV-{rng.randint(2019, 2025)}-{rng.randint(0, 999999):06d}",
               "reference": f"{rng.randint(10**8, 10**9)}", "coordinates": f"{rng.uniform(-80, 80):.4f}, "
                                                                          f"{rng.uniform(-170, 170):.4f}"}
        return tool_result([text(json.dumps(doc, indent=2))], doc)

    def docs() -> dict[str, Any]:
        return tool_result([text(rng.choice([
            "guard 1.4.2 (released 2024-05-01) adds Streamable HTTP. Upgrade from 1.3.x by replacing the binary.",
            "The meeting moved to 14:30 on 2024-06-12; dial-in details follow in the calendar invite.",
            f"Release notes for v{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}: fixed a crash when the "
            f"cache held more than {rng.randint(1000, 99999)} entries (issue #{rng.randint(100, 9999)}).",
            f"Order #{rng.randint(10**8, 10**9)} shipped on {rng.randint(1, 28)}/{rng.randint(1, 12)}/2024 and will "
            f"arrive within 3-5 business days.",
            f"Invoice {rng.randint(2019, 2025)}-{rng.randint(0, 999999):06d} totals EUR {rng.randint(10, 9999)},00.",
            f"Timestamp {rng.randint(1_600_000_000, 1_800_000_000)} corresponds to the last sync.",
        ]))])

    makers = [tickets, build_log, inventory, shipping, docs, docs]
    for i in range(count):
        message = makers[i % len(makers)]()
        out.append(record(f"PII-free {makers[i % len(makers)].__name__} {i}", "pii-free", message, []))
    return out


def generate(seed: int = SEED) -> list[dict[str, Any]]:
    """The corpus for ``seed`` (the committed file is :data:`SEED`'s; others are held-out draws)."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    if SEED_FILE.exists():
        for line in SEED_FILE.read_text(encoding="utf-8").splitlines():
            if line.strip():
                seed = json.loads(line)
                seed["labels"] = [L(lb["entity"], lb["text"]) for lb in seed["labels"]]
                seed.setdefault("shape", "seed")
                seed.setdefault("form", "plain")
                seed["pii_free"] = not seed["labels"]
                records.append(seed)
    records += keyed_records(rng, 60)
    records += tables(rng, 30)
    records += logs(rng, 20)
    records += mail_headers(rng, 12)
    records += prose(rng, 40)
    records += nested_json(rng, 12)
    for form in EVASIONS:
        records += prose(rng, 6, form)
    records += base64_runs(rng, 6)
    records += places(rng)
    records += client_to_server(rng)
    records += pii_free(rng, 36)
    return records


def dump(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


if __name__ == "__main__":
    OUT.write_text(dump(generate()), encoding="utf-8")
    print(f"wrote {OUT}")

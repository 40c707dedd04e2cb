"""Valid synthetic PII values for the labelled corpus (deterministic from a ``random.Random``).

Every generator returns a value that passes the checks a real one would: Luhn for cards,
ISO 13616 mod-97 for IBANs, the ABA checksum for routing numbers, SSA area/group/serial
rules for SSNs, the NHS mod-11 check digit, Base58Check for bitcoin addresses, the DEA check
digit, and ``phonenumbers.is_valid_number`` for phone numbers. Nothing here is a real
person's data: names and domains are invented, phone numbers come from the numbering plans
(``555-01xx`` and the like are fictional ranges where the plan has them).
"""

from __future__ import annotations

import hashlib
import random

import phonenumbers
from phonenumbers import PhoneNumberFormat

FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj",
         "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin", "zoe", "omar", "lucia", "kenji"]
LAST = ["johnson", "smith", "nguyen", "garcia", "okafor", "schmidt", "dubois", "rossi", "kowalski", "tanaka",
        "silva", "haddad", "larsen", "murphy", "novak", "cohen", "patel", "moreau", "fischer", "reyes"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example.co.uk", "acme-industries.com",
           "globex.io", "initech.de", "umbrella.fr", "hooli.com.br", "wayne-enterprises.com"]


def name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}"


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}",
                        f"{first}+{rng.choice(['billing', 'crm', 'news'])}", f"{last}.{first}"])
    value = f"{local}@{rng.choice(DOMAINS)}"
    return value.upper() if rng.random() < 0.08 else (value.title() if rng.random() < 0.08 else value)


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def card_digits(rng: random.Random) -> str:
    brand = rng.choice(["visa", "mc", "amex", "discover", "visa", "mc"])
    if brand == "visa":
        body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    elif brand == "mc":
        body = rng.choice(["51", "52", "53", "54", "55"]) + "".join(rng.choice("0123456789") for _ in range(13))
    elif brand == "amex":
        body = rng.choice(["34", "37"]) + "".join(rng.choice("0123456789") for _ in range(12))
    else:
        body = "6011" + "".join(rng.choice("0123456789") for _ in range(11))
    return body + luhn_digit(body)


def card(rng: random.Random, style: str | None = None) -> str:
    digits = card_digits(rng)
    style = style or rng.choice(["space", "dash", "plain", "space"])
    if len(digits) == 15:
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i:i + 4] for i in range(0, len(digits), 4)]
    return {"space": " ".join(groups), "dash": "-".join(groups), "plain": digits}[style]


_IBAN_SHAPES = {"GB": ("ALPHA4", 14), "DE": ("", 18), "FR": ("", 23), "NL": ("ALPHA4", 10), "ES": ("", 20),
                "IT": ("ALPHA1", 22), "CH": ("", 17), "BE": ("", 12), "AT": ("", 16), "PL": ("", 24)}


def iban(rng: random.Random, style: str | None = None) -> str:
    country = rng.choice(sorted(_IBAN_SHAPES))
    alpha, digits = _IBAN_SHAPES[country]
    letters = {"ALPHA4": 4, "ALPHA1": 1, "": 0}[alpha]
    bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(letters))
    bban += "".join(rng.choice("0123456789") for _ in range(digits))
    if country == "IT":  # CIN letter, ABI, CAB, account (account may hold digits only here)
        bban = bban[0] + bban[1:]
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    check = 98 - int(numeric) % 97
    value = f"{country}{check:02d}{bban}"
    style = style or rng.choice(["grouped", "plain", "grouped", "lower"])
    if style == "grouped":
        return " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    if style == "lower":
        return value.lower()
    return value


def ssn_parts(rng: random.Random) -> tuple[str, str, str]:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


def ssn(rng: random.Random, style: str = "dash") -> str:
    a, g, s = ssn_parts(rng)
    return {"dash": f"{a}-{g}-{s}", "space": f"{a} {g} {s}", "plain": f"{a}{g}{s}"}[style]


def ipv4(rng: random.Random) -> str:
    first = rng.choice([23, 45, 63, 81, 98, 104, 142, 172, 185, 192, 198, 203, 212])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xffff):x}" for _ in range(8)]
    groups[0] = rng.choice(["2001", "2a02", "2600", "fe80"])
    if rng.random() < 0.5:
        groups[2:5] = [""]
        return ":".join(groups).replace(":::", "::")
    return ":".join(groups)


_PHONE_REGIONS = ["US", "US", "US", "GB", "DE", "FR", "IN", "BR", "IL", "CA"]


def phone(rng: random.Random, fmt: str | None = None) -> str:
    """A valid number of a Presidio region, formatted as people write it."""
    region = rng.choice(_PHONE_REGIONS)
    example = phonenumbers.example_number_for_type(region, rng.choice(
        [phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE]))
    assert example is not None
    national = str(example.national_number)
    for _ in range(200):
        candidate = national[:max(3, len(national) - 4)] + "".join(
            rng.choice("0123456789") for _ in range(len(national) - max(3, len(national) - 4)))
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(number):
            break
    else:  # pragma: no cover - the example itself is valid
        number = example
    fmt = fmt or rng.choice(["intl", "intl", "national", "e164", "national"])
    if region in ("US", "CA") and fmt == "national" and rng.random() < 0.5:
        digits = str(number.national_number)
        return rng.choice([f"{digits[:3]}-{digits[3:6]}-{digits[6:]}", f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
                           f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"])
    return phonenumbers.format_number(number, {"intl": PhoneNumberFormat.INTERNATIONAL,
                                               "national": PhoneNumberFormat.NATIONAL,
                                               "e164": PhoneNumberFormat.E164}[fmt])


def us_phone(rng: random.Random) -> str:
    area = rng.choice(["212", "415", "646", "312", "617", "206", "303", "512"])
    line = f"01{rng.randint(0, 99):02d}"
    return rng.choice([f"({area}) 555-{line}", f"{area}-555-{line}", f"+1 {area} 555 {line}",
                       f"+1 ({area}) 555-{line}", f"{area}.555.{line}"])


def bank_account(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(9, 14)))


def aba_routing(rng: random.Random) -> str:
    while True:
        prefix = rng.choice([*range(1, 13), *range(21, 33), *range(61, 73), 80])  # Federal Reserve districts
        body = f"{prefix:02d}" + "".join(
            rng.choice("0123456789") for _ in range(6))
        d = [int(c) for c in body]
        for check in range(10):
            total = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + check)
            if total % 10 == 0:
                return body + str(check)


def passport(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "".join(rng.choice("0123456789") for _ in range(9))
    return rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") + "".join(rng.choice("0123456789") for _ in range(8))


def driver_license(rng: random.Random) -> str:
    return rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") + "".join(rng.choice("0123456789") for _ in range(7))


def itin(rng: random.Random) -> str:
    middle = rng.choice(list(range(50, 66)) + list(range(70, 89)) + [90, 91, 92] + list(range(94, 100)))
    return f"9{rng.randint(0, 99):02d}-{middle:02d}-{rng.randint(1, 9999):04d}"


def nhs(rng: random.Random) -> str:
    while True:
        digits = [rng.randint(0, 9) for _ in range(9)]
        total = sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            s = "".join(map(str, digits)) + str(check)
            return f"{s[:3]} {s[3:6]} {s[6:]}"


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def bitcoin(rng: random.Random) -> str:
    payload = bytes([0]) + bytes(rng.randint(0, 255) for _ in range(20))
    check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    raw = payload + check
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


def mac(rng: random.Random) -> str:
    sep = rng.choice([":", "-"])
    return sep.join(f"{rng.randint(0, 255):02x}" for _ in range(6))


def dea(rng: random.Random) -> str:
    letters = rng.choice("ABFGMPR") + rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ")
    d = [rng.randint(0, 9) for _ in range(6)]
    check = (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    return letters + "".join(map(str, d)) + str(check)


def dob(rng: random.Random) -> str:
    y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y}", f"{d:02d}.{m:02d}.{y}"])


def employee(rng: random.Random) -> str:
    return f"EMP-{rng.randint(0, 999999):06d}"

"""The long equality run: phone validity from metadata against stock phonenumbers.

    .venv/bin/python bench/phone_oracle.py                    # 1,000,000 digit runs x 8 regions
    .venv/bin/python bench/phone_oracle.py --runs 200000 --seed 7 --regions US,GB,JP
    .venv/bin/python bench/phone_oracle.py --plus             # "+" then a digit run (international)

Generates digit runs the way machine data carries them (dialling prefixes, 3-20 digits,
separators `` -./()``), keeps those that reach ``parse`` in the library's matcher, and
decides each for every region twice: with ``PhoneNumberMatcher._parse_and_verify`` (the
oracle) and with :mod:`guard.pii.scan.phonevalid`. Any difference (a missing or extra match,
or a different parsed number) is printed and makes the exit status 1. Also prints the CPU
time per decision of both.

``--plus`` puts a plus sign before each run (country codes first, some invalid) and checks the
international decision (``PhoneValidity.plus_parse`` against ``phonenumbers.parse(candidate,
None)``: same success, so the same attempts are shared between regions) and, for those that
parse, ``plus_verdict`` against the library's matcher in every region.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phonenumbers import Leniency, PhoneNumberMatcher, phonenumbermatcher

from guard.pii import phone
from guard.pii.phone import PrunedPhoneRecognizer
from guard.pii.scan.phonevalid import PhoneValidity, plain_digits, plus_digits

PRESIDIO_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")
PREFIXES = ["", "", "", "", "0", "00", "011", "01", "1", "44", "49", "33", "972", "91", "55", "90", "0800", "1800",
            "00" + "1", "0044", "011972", "8", "39", "7", "86", "0021"]
LENGTHS = [3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 10, 10, 11, 11, 12, 12, 13, 14, 15, 16, 17, 18, 20]


def candidate(rng: random.Random) -> str:
    prefix = rng.choice(PREFIXES)
    digits = prefix + "".join(rng.choice("0123456789") for _ in range(max(rng.choice(LENGTHS) - len(prefix), 1)))
    out = []
    for i, c in enumerate(digits):
        if i and rng.random() < 0.2:
            out.append(rng.choice(" -./"))
        out.append(c)
    text = "".join(out)
    if rng.random() < 0.15:
        text = "(" + text[:3] + ")" + text[3:]
    return text


class _Attempt:
    def __init__(self, text: str) -> None:
        self.offset = 0
        self.candidate = text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--regions", default=",".join(PRESIDIO_REGIONS))
    parser.add_argument("--plus", action="store_true", help="international runs: a plus sign before each")
    args = parser.parse_args()
    regions = args.regions.split(",")
    rng = random.Random(args.seed)
    validity = PhoneValidity()
    recognizer = PrunedPhoneRecognizer(validity=validity)
    matchers = {r: PhoneNumberMatcher("", r, leniency=Leniency.VALID) for r in regions}
    decided = valid = differences = 0
    oracle_cpu = fast_cpu = 0.0
    started = time.monotonic()
    for _ in range(args.runs):
        text = candidate(rng)
        if args.plus:
            text = "+" + text.lstrip("0(")
        digits = plus_digits(text) if args.plus else plain_digits(text)
        if digits is None or phonenumbermatcher.fullmatch(phonenumbermatcher._MATCHING_BRACKETS, text) is None \
                or phonenumbermatcher._PUB_PAGES.search(text):
            continue
        attempt = _Attempt(text)
        if args.plus:
            international = phone._international(text)
            if (validity.plus_parse(digits) is not None) is not international:
                differences += 1
                print(f"DIFFERENT international decision: candidate={text!r} phonenumbers={international}")
            if not international:
                continue
        for region in regions:
            matcher = matchers[region]
            matcher.text = text
            t0 = time.process_time()
            expected = matcher._parse_and_verify(text, 0)
            t1 = time.process_time()
            if args.plus:
                got = recognizer._plus_match(text, 0, digits)
            else:
                got = recognizer._plain_match(region, attempt, digits)  # type: ignore[arg-type]
            t2 = time.process_time()
            oracle_cpu += t1 - t0
            fast_cpu += t2 - t1
            decided += 1
            valid += expected is not None
            if got != expected:
                differences += 1
                if differences <= 20:
                    print(f"DIFFERENT region={region} candidate={text!r} phonenumbers={expected} guard={got}")
    print(f"{args.runs:,} digit runs, {decided:,} decisions ({len(regions)} regions), {valid:,} valid, "
          f"{differences} differences, {time.monotonic() - started:.0f} s")
    print(f"CPU per decision: phonenumbers {oracle_cpu / decided * 1e6:.1f} us, "
          f"metadata verdict {fast_cpu / decided * 1e6:.1f} us ({oracle_cpu / fast_cpu:.1f}x)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())

"""A phone number's time zone remembered per prefix (`pacing.phone_zone`) is the one
phonenumbers gives the whole number (`pacing.phone_zone_of`), on 100,000 generated numbers and
the public customers file's."""

from __future__ import annotations

import csv
import random

import phonenumbers
from phonenumbers import timezone as pn_timezone

from campaignctl import pacing
from tests.support import PUBLIC_DATA


def generated(n: int, seed: int = 15) -> list[str]:
    rng = random.Random(seed)
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    out = []
    for _ in range(n):
        cc = str(rng.choice(codes))
        size = rng.randint(8, 16) - 1 - len(cc)
        lead = rng.choice(["", "", "", "0", "00", "000000000000000"])[:size]
        rest = lead + "".join(rng.choice("0123456789") for _ in range(size - len(lead)))
        out.append(f"+{cc}{rest}")
    # numbers around the guards: short, long, not E.164, all zeros
    out += ["+1212555", "+12125550123", "+390612345678", "+39000000000", "+4400000000", "212555"]
    out += ["+1-212-555-0123", "+99912345678", "+123456789012345678", "+6300012345"]
    return out


def public() -> list[str]:
    out = []
    with open(PUBLIC_DATA / "customers-10000.csv", newline="") as f:
        for row in csv.DictReader(f):
            for raw in (row["Phone 1"], row["Phone 2"]):
                try:
                    num = phonenumbers.parse(raw, "US")
                except phonenumbers.NumberParseException:
                    continue
                out.append(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))
    return out


def test_the_prefix_is_phonenumbers_longest() -> None:
    assert getattr(pn_timezone, "TIMEZONE_LONGEST_PREFIX") == pacing._LONGEST_PREFIX  # noqa: B009


def test_zone_by_prefix_is_the_whole_numbers_zone() -> None:
    numbers = generated(100_000) + public()
    assert len(numbers) > 110_000
    for preferred in ("America/New_York", "Asia/Manila"):
        for phone in numbers:
            expected = pacing.phone_zone_of.__wrapped__(phone, preferred)
            assert pacing.phone_zone(phone, preferred) == expected, phone

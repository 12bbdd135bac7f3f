"""`normalise.parse_plain`, the import's fast path for plain phone numbers, against
`phonenumbers.parse` itself: 100,000 generated numbers and the real ones of the public data."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from campaignctl.leads.normalise import (
    _PLAIN_PHONE,
    _SEPARATORS,
    country_region,
    normalise_phone,
    parse_plain,
)
from tests.support import PUBLIC_DATA

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.VOIP,
    PhoneNumberType.UAN,
]
FORMATS = [PhoneNumberFormat.E164, PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL]


def as_read(value: str) -> str:
    """The value `normalise_phone` hands to the parsers (separators of plain values removed)."""
    return value.translate(_SEPARATORS) if _PLAIN_PHONE.fullmatch(value) else value


def generated(n: int, seed: int = 15) -> Iterator[tuple[str, str | None]]:
    """n (value, region) pairs: every region's example numbers with digits changed, written
    in E.164, national and international forms and as bare digits, and random digit strings;
    read with the number's own region, another one, or none."""
    rng = random.Random(seed)
    examples = [
        (region, ex)
        for region in REGIONS
        for kind in TYPES
        if (ex := phonenumbers.example_number_for_type(region, kind)) is not None
    ]
    for _ in range(n):
        region, ex = rng.choice(examples)
        nsn = phonenumbers.national_significant_number(ex)
        keep = rng.randint(max(1, len(nsn) - 7), len(nsn))
        tail = "".join(rng.choice("0123456789") for _ in range(len(nsn) - keep))
        number = phonenumbers.PhoneNumber(
            country_code=ex.country_code,
            national_number=int(nsn[:keep] + tail),
            italian_leading_zero=ex.italian_leading_zero,
        )
        pick = rng.random()
        if pick < 0.55:
            value = phonenumbers.format_number(number, rng.choice(FORMATS))
        elif pick < 0.75:
            value = str(number.national_number)
        elif pick < 0.85:
            value = str(number.country_code) + str(number.national_number)
        else:
            value = rng.choice(["", "+"]) + "".join(
                rng.choice("0123456789") for _ in range(rng.randint(1, 18))
            )
        read_as = rng.random()
        if read_as < 0.6:
            yield value, region
        elif read_as < 0.9:
            yield value, rng.choice(REGIONS)
        else:
            yield value, None


def real() -> Iterator[tuple[str, str | None]]:
    """Both phone columns of customers-10000.csv, with the row's country as the region."""
    with open(PUBLIC_DATA / "customers-10000.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            region = country_region(row["Country"]) or "US"
            yield row["Phone 1"], region
            yield row["Phone 2"], region


def check(pairs: Iterator[tuple[str, str | None]]) -> tuple[int, int]:
    """Assert parse_plain agrees with parse wherever it answers; (values, answered)."""
    total = fast = 0
    for raw, region in pairs:
        value = as_read(raw)
        total += 1
        mine = parse_plain(value, region)
        if mine is None:
            continue
        fast += 1
        try:
            theirs = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException as exc:
            raise AssertionError(f"{value!r} ({region}): parse refuses it ({exc})") from None
        assert mine == theirs, (value, region, mine, theirs)
        assert phonenumbers.format_number(mine, PhoneNumberFormat.E164) == (
            phonenumbers.format_number(theirs, PhoneNumberFormat.E164)
        )
    return total, fast


def test_fast_path_equals_parse_on_generated_numbers() -> None:
    total, fast = check(generated(100_000))
    assert total == 100_000
    assert fast > 30_000  # the fast path is taken, not bypassed


def test_fast_path_equals_parse_on_real_numbers() -> None:
    total, fast = check(real())
    assert total == 20_000
    assert fast > 1_000


def test_the_import_formats_take_the_fast_path() -> None:
    """The forms bench/gen_leads.py writes: most skip `parse`, and all come out in E.164."""
    plain = {
        "(415) 555-0132": "US",
        "415.555.0132": "US",
        "+1 415 555 0132": "US",
        "4155550132": "US",
        "+63 917 123 4567": "US",
        "+639171234567": "PH",
        "917 123 4567": "PH",
        "0917-123-4567": "PH",  # a national prefix, stripped as parse strips it
        "09171234567": "PH",
    }
    for value, region in plain.items():
        assert parse_plain(as_read(value), region) is not None, value
    left_to_parse = {
        "1-415-555-0132": "US",  # the country code without +
        "011 44 20 7946 0000": "US",  # an international prefix
        "+39 06 1234 5678": "US",  # a leading zero
        "415 555 0132 x12": "US",  # an extension
    }
    for value, region in left_to_parse.items():
        assert parse_plain(as_read(value), region) is None, value
    assert normalise_phone("0917-123-4567", "PH") == ("+639171234567", None, None)
    assert normalise_phone("(415) 555-0132", "US") == ("+14155550132", None, None)

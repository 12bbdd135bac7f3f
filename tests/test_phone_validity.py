"""`normalise.normalise_phone` (its fast path: `plain_parts` and `phones.valid`) against
phonenumbers' own parse, validity checks and E.164 formatting, on 100,000 generated numbers
and the real ones of the public data, and on every region's example numbers."""

from __future__ import annotations

from collections.abc import Iterator

import phonenumbers

from campaignctl.leads import phones
from campaignctl.leads.normalise import _where, normalise_phone, plain_parts
from tests.test_phone_fast_path import REGIONS, TYPES, as_read, generated, real


def reference(value: str, region: str | None) -> tuple[str | None, str | None, str | None]:
    """What `normalise_phone` answered before its fast path: phonenumbers alone."""
    if as_read(value) != value:
        value = as_read(value)
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None, None, f"not a phone number{_where(region)}"
    valid = (
        region is not None
        and number.country_code == phonenumbers.country_code_for_region(region)
        and phonenumbers.is_valid_number_for_region(number, region)
    ) or (phonenumbers.is_possible_number(number) and phonenumbers.is_valid_number(number))
    if not valid:
        return None, None, f"not a valid number{_where(region)}"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, number.extension or None, None


def check(pairs: Iterator[tuple[str, str | None]]) -> tuple[int, int, int]:
    """Assert normalise_phone == reference on each pair; (values, fast path, valid)."""
    total = fast = ok = 0
    for value, region in pairs:
        total += 1
        fast += plain_parts(as_read(value), region) is not None
        mine = normalise_phone(value, region)
        assert mine == reference(value, region), (value, region)
        ok += mine[0] is not None
    return total, fast, ok


def test_normalise_phone_equals_phonenumbers_on_generated_numbers() -> None:
    total, fast, ok = check(generated(100_000, seed=1515))
    assert total == 100_000
    assert fast > 50_000  # the fast path is taken, not bypassed
    assert 10_000 < ok < total  # both answers are exercised


def test_normalise_phone_equals_phonenumbers_on_real_numbers() -> None:
    total, fast, ok = check(real())
    assert total == 20_000
    assert fast > 1_000
    assert ok > 1_000


def _examples() -> Iterator[tuple[str, phonenumbers.PhoneNumber, str]]:
    """(region, number, national significant number) of each region's example number of
    each type."""
    for region in REGIONS:
        for kind in TYPES:
            ex = phonenumbers.example_number_for_type(region, kind)
            if ex is None:
                continue
            assert ex.country_code is not None
            yield region, ex, phonenumbers.national_significant_number(ex)


def example_numbers() -> Iterator[tuple[str, str | None]]:
    """Each region's example number of each type, as E.164 and national digits, read with
    its own region, a neighbour sharing its country code, and none."""
    for region, ex, nsn in _examples():
        assert ex.country_code is not None
        shared = phonenumbers.region_codes_for_country_code(ex.country_code)
        for value in (f"+{ex.country_code}{nsn}", nsn, "0" + nsn):
            for read_as in (region, shared[-1], None):
                yield value, read_as


def test_normalise_phone_equals_phonenumbers_on_example_numbers() -> None:
    total, fast, ok = check(example_numbers())
    assert fast > total // 2
    assert ok > total // 3


def test_validity_helpers_equal_phonenumbers() -> None:
    """`phones.valid_in`, `region_of` and `possible` on every example number."""
    for region, ex, nsn in _examples():
        assert ex.country_code is not None
        for other in (region, "US", "GB", "PH"):
            assert phones.valid_in(ex.country_code, nsn, other) == (
                phonenumbers.is_valid_number_for_region(ex, other)
            ), (region, nsn, other)
        own = phones.region_of(ex.country_code, nsn)
        assert own == phonenumbers.region_code_for_number(ex), (region, nsn)
        assert phones.possible(ex.country_code, nsn) == phonenumbers.is_possible_number(ex)

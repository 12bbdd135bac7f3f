"""Phone number validity read straight from phonenumbers' metadata, for the import's fast path.

`phonenumbers.is_valid_number_for_region` walks up to eleven number types (premium rate, toll
free, ... fixed line, mobile) through several Python calls each, about a third of a row's cost
on a file of phone numbers. `valid_in` answers the same question with the same metadata and
patterns, compiled once per region; `possible` and `region_of` are `is_possible_number` and
`region_code_for_number` for a national significant number. `tests/test_phone_validity.py`
holds `normalise.normalise_phone`, which uses them, equal to phonenumbers' own calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_Desc = tuple[frozenset[int], Callable[[str], object]]


def _desc(desc: Any) -> _Desc | None:
    """(possible lengths, fullmatch) of a PhoneNumberDesc; None where phonenumbers' own
    `_is_number_matching_desc` is always False (no desc, no pattern). Empty lengths: any."""
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length), re.compile(desc.national_number_pattern).fullmatch


def _matches(desc: _Desc, nsn: str) -> bool:
    lengths, fullmatch = desc
    return (not lengths or len(nsn) in lengths) and fullmatch(nsn) is not None


@lru_cache(maxsize=512)
def _types(region: str) -> tuple[_Desc | None, tuple[_Desc, ...]] | None:
    """A region's general description and the type descriptions any of which makes a number
    valid (phonenumbers' `_number_type_helper` not UNKNOWN); None: no metadata."""
    from phonenumbers.phonemetadata import PhoneMetadata

    meta = PhoneMetadata.metadata_for_region(region.upper(), None)
    if meta is None:
        return None
    kinds = [
        meta.fixed_line,
        meta.premium_rate,
        meta.toll_free,
        meta.shared_cost,
        meta.voip,
        meta.personal_number,
        meta.pager,
        meta.uan,
        meta.voicemail,
    ]
    if not meta.same_mobile_and_fixed_line_pattern:
        kinds.insert(1, meta.mobile)
    found = tuple(d for d in map(_desc, kinds) if d is not None)
    return _desc(meta.general_desc), found


def _type_known(region: str, nsn: str) -> bool:
    """`_number_type_helper(nsn, metadata of region) != UNKNOWN`."""
    types = _types(region)
    if types is None:
        return False
    general, kinds = types
    if general is None or not _matches(general, nsn):
        return False
    return any(_matches(d, nsn) for d in kinds)


@lru_cache(maxsize=512)
def _code_of(region: str) -> int | None:
    """The country code of a region with metadata (None: phonenumbers knows no such region)."""
    from phonenumbers.phonemetadata import PhoneMetadata

    meta = PhoneMetadata.metadata_for_region(region.upper(), None)
    return None if meta is None or meta.country_code is None else int(meta.country_code)


def valid_in(code: int, nsn: str, region: str | None) -> bool:
    """`phonenumbers.is_valid_number_for_region(number, region)` for a number of country code
    `code` whose national significant number is `nsn` (geographic regions only)."""
    if region is None or _code_of(region) != code:
        return False
    return _type_known(region, nsn)


@lru_cache(maxsize=1024)
def _regions(code: int) -> tuple[tuple[str, Callable[[str], object] | None], ...] | None:
    """The regions of a country code, each with its `leading_digits` match; None when one of
    them has no metadata or is non-geographic (then the caller asks phonenumbers)."""
    import phonenumbers
    from phonenumbers.phonemetadata import PhoneMetadata

    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
    if not regions:
        return None
    out = []
    for region in regions:
        meta = PhoneMetadata.metadata_for_region(region.upper(), None)
        if meta is None or region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
            return None
        lead = re.compile(meta.leading_digits).match if meta.leading_digits is not None else None
        out.append((region, lead))
    return tuple(out)


_UNKNOWN = object()


def region_of(code: int, nsn: str) -> str | object | None:
    """`phonenumbers.region_code_for_number`; `_UNKNOWN` where the caller must ask it."""
    regions = _regions(code)
    if regions is None:
        return _UNKNOWN
    if len(regions) == 1:
        return regions[0][0]
    for region, lead in regions:
        if lead is not None:
            if lead(nsn):
                return region
        elif _type_known(region, nsn):
            return region
    return None


@lru_cache(maxsize=1024)
def _possible_lengths(code: int) -> frozenset[int] | None:
    """The national lengths `is_possible_number` accepts for a country code: its main region's
    general lengths and local-only lengths (`_test_number_length` for no particular type);
    None where phonenumbers has nothing to read them from (then it is asked itself)."""
    import phonenumbers
    from phonenumbers.phonemetadata import PhoneMetadata

    region = phonenumbers.region_code_for_country_code(code)
    meta = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    general = None if meta is None else meta.general_desc
    if general is None or not general.possible_length:
        return None
    return frozenset((*general.possible_length, *(general.possible_length_local_only or ())))


def possible(code: int, nsn: str) -> bool:
    """`phonenumbers.is_possible_number` (the lengths of the code's main region)."""
    lengths = _possible_lengths(code)
    if lengths is None:
        import phonenumbers

        number = phonenumbers.PhoneNumber(country_code=code, national_number=int(nsn))
        if nsn[0] == "0":
            number.italian_leading_zero = True
            zeros = min(len(nsn) - len(nsn.lstrip("0")), len(nsn) - 1)
            number.number_of_leading_zeros = zeros if zeros != 1 else None
        return bool(phonenumbers.is_possible_number(number))
    return len(nsn) in lengths


def valid(code: int, nsn: str, region: str | None) -> bool | None:
    """Whether the import keeps a number: valid for the expected region, else possible and
    valid for its own (`normalise_phone`'s rule). None: the caller must ask phonenumbers."""
    if valid_in(code, nsn, region):
        return True
    if _regions(code) is None:
        return None
    if not possible(code, nsn):  # lengths only: cheaper than finding the number's region
        return False
    own = region_of(code, nsn)
    return isinstance(own, str) and valid_in(code, nsn, own)

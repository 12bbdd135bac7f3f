"""Column mapping: which CSV column fills which lead field (`--map`, then the usual header
spellings), and the attribute name of every other column."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from campaignctl.leads.csvfile import MAP_HINT, LeadsInputError
from campaignctl.store.fields import LEAD_FIXED_FIELDS as FIXED_FIELDS

#: Lead fields a CSV column can fill; `country` only helps read phone numbers (and is kept).
MAPPABLE = (*(f for f in FIXED_FIELDS if f != "status"), "country")

# Header spellings that map by themselves, compared after `_header_key` (lower case, letters and
# digits only). Earlier spellings win when a file has several: `Phone 1` before `Mobile`.
ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "email1", "primaryemail", "mail"),
    "phone": (
        "phone",
        "phonenumber",
        "phone1",
        "mobile",
        "mobilephone",
        "mobilenumber",
        "cell",
        "cellphone",
        "cellnumber",
        "telephone",
        "tel",
    ),
    "first_name": ("firstname", "first", "givenname", "fname", "forename"),
    "last_name": ("lastname", "last", "surname", "familyname", "lname"),
    "timezone": ("timezone", "tz", "tzname"),
    "tags": ("tags", "tag", "labels"),
    "country": ("country", "countryname", "countrycode"),
}

# Attribute names that would hide a lead field in templates, `--where` or `leads list`.
RESERVED = (*FIXED_FIELDS, "optouts", "id", "lead", "attrs")


def _header_key(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def snake_case(name: str) -> str:
    """`Phone 2` -> `phone_2`, `Subscription Date` -> `subscription_date`, `CustomerID` -> ..."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"\W+", "_", s).strip("_").lower()


@dataclass(frozen=True)
class ColumnMap:
    """Which column fills which lead field, and the attribute name of every other column."""

    header: tuple[str, ...]
    fields: Mapping[str, int]
    attrs: tuple[tuple[int, str], ...]

    def column(self, lead_field: str) -> str | None:
        i = self.fields.get(lead_field)
        return None if i is None else self.header[i]


def parse_mapping(specs: Iterable[str]) -> dict[str, str]:
    """`["email=E-mail Address"]` -> `{"email": "E-mail Address"}`, checking field names."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, column = spec.partition("=")
        name = name.strip().lower().replace("-", "_")
        if not sep or not name or not column.strip():
            raise LeadsInputError(
                f"--map {spec!r}: expected FIELD=COLUMN", "for example: --map email='E-mail 1'"
            )
        if name not in MAPPABLE:
            raise LeadsInputError(
                f"--map {spec!r}: unknown field {name!r}",
                "fields that can be mapped: " + ", ".join(MAPPABLE),
            )
        out[name] = column.strip()
    return out


def map_columns(header: Sequence[str], mapping: Mapping[str, str], path: Path) -> ColumnMap:
    """Map a CSV header to lead fields: `--map` first, then the usual header spellings."""
    keys = [_header_key(h) for h in header]
    seen = ", ".join(repr(h) for h in header)
    fields: dict[str, int] = {}
    for name, column in mapping.items():
        idx = next((i for i, h in enumerate(header) if h.strip() == column), None)
        if idx is None:
            idx = next((i for i, k in enumerate(keys) if k == _header_key(column)), None)
        if idx is None:
            raise LeadsInputError(
                f"--map {name}={column}: {path} has no column {column!r}; its columns: {seen}",
                "use one of the columns above, spelled as in the header",
            )
        fields[name] = idx
    for name, aliases in ALIASES.items():
        if name in fields:
            continue
        for alias in aliases:
            idx = next(
                (i for i, k in enumerate(keys) if k == alias and i not in fields.values()), None
            )
            if idx is not None:
                fields[name] = idx
                break
    if "email" not in fields and "phone" not in fields:
        raise LeadsInputError(
            f"{path}: no email or phone column; its columns: {seen}",
            MAP_HINT.format(path=path) + " (or --map phone=COLUMN)",
        )
    # Every column not mapped to a fixed field stays as an attribute; so does the country.
    kept = {i for f, i in fields.items() if f != "country"}
    used: set[str] = set(RESERVED)
    attrs: list[tuple[int, str]] = []
    for i, h in enumerate(header):
        if i in kept:
            continue
        base = snake_case(h) or f"column_{i + 1}"
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        attrs.append((i, name))
    return ColumnMap(tuple(header), fields, tuple(attrs))

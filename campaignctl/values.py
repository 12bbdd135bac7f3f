"""How a lead's tags and attribute values are stored, so audiences can compare them.

- Tags are stored lower-case (`Buyer`, `BUYER` and `buyer` are one tag), each once, in the order
  first seen.
- An attribute value that looks like a plain number is stored as a JSON number, so
  `lead.budget_max >= 3000000` compares numbers: `3000000`, `3,000,000` (thousands in groups of
  three), `-12`, `3000000.0` and `0.5` do; `02134` (zero-padded: a zip code), `+639171234567`
  (a phone), `1e5`, `1,5`, `.5` and numbers of more than 15 digits stay text. A whole number
  becomes an integer, one with a decimal point a float (`19.90` prints as `19.9`).

The import (`campaignctl.leads`) and the migration of existing rows (`store.migrations`) share
these rules. No imports beyond the standard library: the lean import process loads this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: The longest number (in digits) stored as one: longer ones are identifiers, not amounts.
MAX_DIGITS = 15
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,2}(?:,[0-9]{3})+|[1-9][0-9]*)(?:\.[0-9]+)?")


def normal_tags(tags: Iterable[str]) -> list[str]:
    """Tags lower-case, stripped, each once (first seen first), blanks left out."""
    return list(dict.fromkeys(t for t in (str(t).strip().lower() for t in tags) if t))


def attr_value(value: Any) -> Any:
    """The value an attribute is stored as: a number when the text looks like one (see above),
    else the value unchanged."""
    if not isinstance(value, str) or not _NUMBER.fullmatch(value):
        return value
    text = value.replace(",", "")
    if sum(c.isdigit() for c in text) > MAX_DIGITS:
        return value
    return float(text) if "." in text else int(text)

"""Leads from CSV files.

- `csvfile`: reading the file (encoding, delimiter, chunks of whole records);
- `columns`: which column fills which lead field;
- `normalise`: one record to a lead row (email and phone rules) and the identity rule;
- `importer`: the import, in a process of its own with workers (forkserver);
- `changes`: what an `--update` row changes in a stored lead, and the tag rules;
- `edit`: `leads set` and `leads tag`;
- `report`: what an import did;
- `listing`: `leads list` (and the `--where` matching `leads tag` shares).

The import and worker processes load this package: nothing here imports SQL or CLI code at
the top.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaignctl.leads.columns import parse_mapping, snake_case
    from campaignctl.leads.csvfile import LeadsInputError, inspect_csv
    from campaignctl.leads.importer import import_leads, sample_leads_from_csv
    from campaignctl.leads.listing import list_leads
    from campaignctl.leads.normalise import json_string_object, json_strings, normalise_email
    from campaignctl.leads.report import ImportReport, Note

__all__ = [
    "ImportReport",
    "LeadsInputError",
    "Note",
    "import_leads",
    "inspect_csv",
    "json_string_object",
    "json_strings",
    "list_leads",
    "normalise_email",
    "parse_mapping",
    "sample_leads_from_csv",
    "snake_case",
]

#: Where each name lives: loaded at its first use, so that a command reaching one module (the
#: campaign file's check of the sender's address) does not load the import and its workers.
_HOMES = {
    "parse_mapping": "columns",
    "snake_case": "columns",
    "LeadsInputError": "csvfile",
    "inspect_csv": "csvfile",
    "import_leads": "importer",
    "sample_leads_from_csv": "importer",
    "list_leads": "listing",
    "json_string_object": "normalise",
    "json_strings": "normalise",
    "normalise_email": "normalise",
    "ImportReport": "report",
    "Note": "report",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value

"""A sequence's `enrol_on` events: which lead events (from the journal) enrol a lead.

`import` is a lead's first import (`lead.imported`), `status:VALUE` a status change to VALUE
(`lead.status` with `to`), `tag:VALUE` a tag added (`lead.tag`, code `added`); tags are compared
lower-case, as they are stored. A leaf: the config validates the names, the engine matches them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The accepted forms, as `check` names them.
ENROL_ON_FORMS = '"import", "status:VALUE" or "tag:VALUE"'

#: The journal kinds an `enrol_on` list can read (store.journal.Kind values).
JOURNAL_KINDS = ("lead.imported", "lead.status", "lead.tag")


@dataclass(frozen=True)
class LeadEvent:
    """One `enrol_on` entry: `kind` is import, status or tag; `value` the status or tag."""

    kind: str
    value: str | None = None


def enrol_on_event(text: str) -> LeadEvent | None:
    """The entry as a LeadEvent, or None when it is not one of ENROL_ON_FORMS."""
    if text == "import":
        return LeadEvent("import")
    kind, sep, value = text.partition(":")
    if sep and kind in ("status", "tag") and value.strip() == value and value:
        return LeadEvent(kind, value.lower() if kind == "tag" else value)
    return None


def matches(
    events: Sequence[LeadEvent], kind: str, code: str | None, detail: Mapping[str, Any]
) -> bool:
    """Whether a journal row (`kind`, `code`, `detail`) is one of `events`."""
    for e in events:
        if e.kind == "import" and kind == "lead.imported":
            return True
        if e.kind == "status" and kind == "lead.status" and detail.get("to") == e.value:
            return True
        if (
            e.kind == "tag"
            and kind == "lead.tag"
            and code == "added"
            and str(detail.get("tag", "")).lower() == e.value
        ):
            return True
    return False

"""What an update changes in a lead: a CSV row over the stored lead (`leads import --update`),
and the tag rules that `leads set` and `leads tag` share.

Pure functions, no SQL: the import process loads this module.

Tags are compared case-insensitively and new ones are stored in lower case; a tag already
stored keeps its spelling (existing rows are lower-cased by a migration of their own).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from campaignctl.leads.normalise import Parsed, json_string_object, json_strings

#: `--tags`: how `leads import --update` treats the tags of a lead it updates.
TAGS_MODES = ("merge", "replace")

_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def merge_tags(stored: Sequence[str], new: Iterable[str]) -> list[str]:
    """`stored`, then each tag of `new` not in it yet (compared case-insensitively), in lower
    case."""
    out = list(stored)
    seen = {t.lower() for t in stored}
    for tag in new:
        key = tag.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append(key)
    return out


def remove_tags(stored: Sequence[str], gone: Iterable[str]) -> list[str]:
    """`stored` without the tags of `gone` (compared case-insensitively)."""
    keys = {t.strip().lower() for t in gone}
    return [t for t in stored if t.lower() not in keys]


def replace_tags(stored: Sequence[str], new: Iterable[str]) -> list[str]:
    """`new` (lower case, deduplicated); `stored` itself when it holds the same tags."""
    out = merge_tags([], new)
    if {t.lower() for t in stored} == set(out):
        return list(stored)
    return out


def tag_diff(before: Sequence[str], after: Sequence[str]) -> tuple[list[str], list[str]]:
    """(added, removed) between two tag lists, compared case-insensitively."""
    b = {t.lower() for t in before}
    a = {t.lower() for t in after}
    return [t for t in after if t.lower() not in b], [t for t in before if t.lower() not in a]


class RowUpdate(NamedTuple):
    """What a CSV row changes in a stored lead."""

    #: (phone, first_name, last_name, timezone, tags JSON, attrs JSON), as they are to be stored
    values: tuple[Any, ...]
    #: the names of the changed fields and attributes (not tags: see `added` and `removed`)
    fields: list[str]
    added: list[str]
    removed: list[str]


def update_from_row(
    stored: Sequence[Any],
    row: Parsed,
    *,
    replace: bool,
    phone_free: Callable[[str], bool],
) -> tuple[RowUpdate | None, str | None]:
    """(the update, or None when the row changes nothing; a note when the row's phone belongs
    to another lead and is left out).

    `stored` is (id, phone, first_name, last_name, timezone, tags JSON, attrs JSON). A field or
    attribute is updated when the row has a value for it: an empty cell erases nothing. Tags
    are merged, or with `replace` set to the row's when its tags cell is not empty. Status,
    email (the identity) and everything else stay.
    """
    _id, phone, first, last, tz, tags_json, attrs_json = stored
    fields: list[str] = []
    note = None
    if row.phone is not None and row.phone != phone:
        if phone_free(row.phone):
            phone = row.phone
            fields.append("phone")
        else:
            note = f"phone {row.phone} already belongs to another lead; not updated"
    if row.first_name is not None and row.first_name != first:
        first = row.first_name
        fields.append("first_name")
    if row.last_name is not None and row.last_name != last:
        last = row.last_name
        fields.append("last_name")
    if row.timezone is not None and row.timezone != tz:
        tz = row.timezone
        fields.append("timezone")
    if row.attrs != "{}" and row.attrs != attrs_json:
        attrs: dict[str, Any] = json.loads(attrs_json or "{}")
        row_attrs: dict[str, str] = json.loads(row.attrs)
        changed = [k for k, v in row_attrs.items() if attrs.get(k) != v]
        if changed:
            attrs.update(row_attrs)
            # the import's own quick encoding when every value is text, as the CSV's are
            if all(type(v) is str for v in attrs.values()):
                attrs_json = json_string_object(attrs)
            else:
                attrs_json = _to_json(attrs)
            fields.extend(changed)
    added: list[str] = []
    removed: list[str] = []
    if row.tags != "[]" or (replace and row.tagged):
        before: list[str] = json.loads(tags_json or "[]")
        new = json.loads(row.tags)
        after = replace_tags(before, new) if replace and row.tagged else merge_tags(before, new)
        if after != before:
            added, removed = tag_diff(before, after)
            tags_json = json_strings(after)
            if not (added or removed):  # the same tags in another order
                fields.append("tags")
    if not (fields or added or removed):
        return None, note
    return RowUpdate((phone, first, last, tz, tags_json, attrs_json), fields, added, removed), note

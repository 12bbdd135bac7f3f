"""`leads set` and `leads tag`: changing stored leads by hand, each command one transaction.

Every status change and every tag added or removed is written to the journal in the same
transaction (source `leads set` or `leads tag`), beside a `lead.updated` row naming the other
fields changed: campaigns can enrol on them (`store.journal.lead_events`). Tags are compared
case-insensitively and written in lower case (`changes`).

SQL and the store are imported inside the functions: the import process loads this package.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from campaignctl.errors import UsageError
from campaignctl.leads.changes import merge_tags, remove_tags, replace_tags, tag_diff
from campaignctl.leads.columns import snake_case
from campaignctl.leads.listing import Skipped
from campaignctl.leads.lookup import find_lead
from campaignctl.values import attr_value

if TYPE_CHECKING:
    from campaignctl.store import Store
    from campaignctl.store.conn import Transaction

#: The fixed fields `leads set` changes; any other name is an attribute.
SETTABLE = ("status", "first_name", "last_name", "timezone", "email", "phone", "tags")
#: Names that are neither: the lead's bookkeeping, and what `leads list` adds.
NOT_SETTABLE = ("id", "attrs", "optouts", "lead", "created_at", "updated_at")
OPERATORS = ("=", "+=", "-=")
_ASSIGNMENT = re.compile(r"(?P<key>[^=+\-*/!<>:]*)(?P<op>[+\-*/!<>:]*=)(?P<value>.*)", re.S)
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_TAG_SPLIT = re.compile(r"[;,]")
_EXAMPLES = "for example: status=qualified tags+=buyer budget_max=3500000 city="


@dataclass(frozen=True)
class Assignment:
    """One `KEY=VALUE` (or `tags+=T`, `tags-=T`) of `leads set`, as typed."""

    key: str
    op: str
    value: str
    text: str


def parse_assignments(specs: Sequence[str]) -> list[Assignment]:
    """Check every `KEY=VALUE` before anything is read; a UsageError names the first bad one."""
    if not specs:
        raise UsageError("leads set: nothing to set", _EXAMPLES)
    out: list[Assignment] = []
    for spec in specs:
        m = _ASSIGNMENT.fullmatch(spec)
        if m is None:
            raise UsageError(f"{spec!r}: expected KEY=VALUE", _EXAMPLES)
        key, op, value = m["key"].strip(), m["op"], m["value"].strip()
        if not _NAME.fullmatch(key):
            suggestion = snake_case(key)
            hint = f"did you mean {suggestion}=...?" if suggestion else _EXAMPLES
            raise UsageError(
                f"{spec!r}: {key!r} is not a field or attribute name "
                "(lower-case letters, digits and _)",
                hint,
            )
        if key in NOT_SETTABLE:
            raise UsageError(f"{spec!r}: {key!r} cannot be set", _EXAMPLES)
        if op not in OPERATORS:
            raise UsageError(
                f"{spec!r}: unknown operator {op!r} (use =, or += and -= on tags)", _EXAMPLES
            )
        if op != "=" and key != "tags":
            raise UsageError(f"{spec!r}: {op} works on tags only; use {key}=VALUE", _EXAMPLES)
        if key == "status" and not value:
            raise UsageError(f"{spec!r}: a lead's status cannot be empty", "e.g. status=new")
        out.append(Assignment(key, op, value, spec))
    return out


@dataclass
class LeadChange:
    """What `leads set` did to one lead."""

    lead: str  # its email, else phone
    fields: list[str] = field(default_factory=list)  # fixed fields and attributes, not status
    status: tuple[str, str] | None = None  # (from, to)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.fields or self.status or self.added or self.removed)


def _tags_of(value: str) -> list[str]:
    return [t.strip().lower() for t in _TAG_SPLIT.split(value) if t.strip()]


def _value(a: Assignment, default_region: str | None) -> Any:
    """An assignment's value as stored: checked and normalised like the import's; None clears."""
    from campaignctl.leads.normalise import normalise_email, normalise_phone, valid_timezone

    if not a.value:
        return None
    if a.key == "timezone" and not valid_timezone(a.value):
        raise UsageError(
            f"{a.text!r}: {a.value!r} is not an IANA time zone",
            "time zones look like America/New_York or Asia/Manila",
        )
    if a.key == "email":
        email, why = normalise_email(a.value)
        if email is None:
            raise UsageError(f"{a.text!r}: not a valid email: {why}")
        return email
    if a.key == "phone":
        phone, _ext, why = normalise_phone(a.value, default_region)
        if phone is None:
            raise UsageError(
                f"{a.text!r}: {a.value!r} is {why}",
                "give the phone with its country code (+63 917 123 4567)",
            )
        return phone
    return a.value


def set_lead(
    store: Store,
    address: str,
    assignments: Sequence[Assignment],
    *,
    default_region: str | None,
    now: datetime,
) -> LeadChange:
    """Apply `leads set` to one lead, with its journal rows, in one write transaction."""
    with store.write() as session:
        return _set_lead(session, address, assignments, default_region, now)


def _set_lead(
    session: Transaction,
    address: str,
    assignments: Sequence[Assignment],
    default_region: str | None,
    now: datetime,
) -> LeadChange:
    from campaignctl.store import journal, lead_changes
    from campaignctl.store.journal import Kind

    lead = find_lead(session, address, default_region)
    assert lead.id is not None
    fixed: dict[str, Any] = {
        "status": lead.status,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "timezone": lead.timezone,
        "email": lead.email,
        "phone": lead.phone,
    }
    before_fixed = dict(fixed)
    tags_before = list(lead.tags or [])
    tags = list(tags_before)
    attrs_before: dict[str, Any] = dict(lead.attrs or {})
    attrs = dict(attrs_before)
    for a in assignments:
        if a.key == "tags":
            given = _tags_of(a.value)
            if a.op == "+=":
                tags = merge_tags(tags, given)
            elif a.op == "-=":
                tags = remove_tags(tags, given)
            else:
                tags = replace_tags(tags, given)
        elif a.key in SETTABLE:
            fixed[a.key] = _value(a, default_region)
        elif a.value:
            attrs[a.key] = attr_value(a.value)  # as the import stores it: numbers as numbers
        else:
            attrs.pop(a.key, None)
    name = lead.email or lead.phone or str(lead.id)
    if fixed["email"] is None and fixed["phone"] is None:
        raise UsageError(
            f"{name}: a lead keeps an email or a phone; this would remove both",
            "to erase the person, use `campaignctl leads delete`",
        )
    for column in ("email", "phone"):
        value = fixed[column]
        if value is not None and value != before_fixed[column]:
            owner = lead_changes.address_owner(session, column, value)
            if owner is not None and owner != lead.id:
                raise UsageError(
                    f"{name}: {column} {value} already belongs to another lead",
                    f"see it with `campaignctl leads list --where \"{column} == '{value}'\"`",
                )
    change = LeadChange(name)
    values: dict[str, Any] = {k: v for k, v in fixed.items() if v != before_fixed[k]}
    change.fields = [k for k in values if k != "status"]
    change.fields += sorted(
        k for k in {*attrs, *attrs_before} if attrs.get(k) != attrs_before.get(k)
    )
    if attrs != attrs_before:
        values["attrs"] = attrs
    if "status" in values:
        change.status = (before_fixed["status"], values["status"])
    if tags != tags_before:
        values["tags"] = tags
        change.added, change.removed = tag_diff(tags_before, tags)
    if not values:
        return change
    lead_changes.set_values(session, lead.id, values, now)
    source = "leads set"
    rows = []
    if change.fields:
        rows.append(
            journal.entry(
                Kind.LEAD_UPDATED, now, {"fields": change.fields}, lead_id=lead.id, source=source
            )
        )
    if change.status is not None:
        old, new = change.status
        rows.append(
            journal.entry(
                Kind.LEAD_STATUS, now, {"from": old, "to": new}, lead_id=lead.id, source=source
            )
        )
    for code, tag_list in (("added", change.added), ("removed", change.removed)):
        rows.extend(
            journal.entry(Kind.LEAD_TAG, now, {"tag": t}, lead_id=lead.id, code=code, source=source)
            for t in tag_list
        )
    journal.add(session, rows)
    return change


def check_set(store: Store, address: str, default_region: str | None) -> None:
    """Refuse an unknown lead before any database file is created (the read-only store)."""
    with store.read() as session:
        find_lead(session, address, default_region)


def normalise_tag(tag: str) -> str:
    """A tag as `leads tag` writes it: stripped, lower case; a UsageError when it cannot be."""
    key = tag.strip().lower()
    if not key:
        raise UsageError("leads tag: the tag is empty", "e.g. campaignctl leads tag buyer ...")
    if _TAG_SPLIT.search(key):
        raise UsageError(
            f"leads tag {tag!r}: a tag cannot contain ',' or ';'",
            "run the command once per tag",
        )
    return key


@dataclass
class TagResult:
    """What `leads tag` did (or would do, in a dry run)."""

    tag: str
    matched: int = 0
    changed: int = 0
    #: leads the expression could not be evaluated on: left out (`leads.listing.Skipped`)
    skipped: Skipped = field(default_factory=lambda: Skipped())


def tag_leads(
    store: Store,
    tag: str,
    where: str,
    *,
    remove: bool = False,
    dry_run: bool = False,
    now: datetime,
) -> TagResult:
    """Add (or remove) `tag` on every lead matching `where` (`leads list --where`'s language and
    evaluation), in one transaction with a journal row per change; a dry run writes nothing."""
    from campaignctl.audience import compile_audience
    from campaignctl.leads.listing import matching_leads
    from campaignctl.store import journal, lead_changes
    from campaignctl.store.journal import Kind

    key = normalise_tag(tag)
    compile_audience(where, "--where")  # a bad expression fails before the write lock
    result = TagResult(key)
    with store.read() if dry_run else store.write() as session:
        changes: list[tuple[int, list[str]]] = []
        for lead in matching_leads(session, where, result.skipped):
            result.matched += 1
            before = list(lead.tags or [])
            after = remove_tags(before, [key]) if remove else merge_tags(before, [key])
            if after != before:
                assert lead.id is not None
                changes.append((lead.id, after))
        result.changed = len(changes)
        if not dry_run and changes:
            lead_changes.set_tags(session, changes, now)
            code = "removed" if remove else "added"
            journal.add(
                session,
                [
                    journal.entry(
                        Kind.LEAD_TAG, now, {"tag": key}, lead_id=i, code=code, source="leads tag"
                    )
                    for i, _tags in changes
                ],
            )
    return result

"""`leads list`: leads as JSON-ready objects, filtered by an audience expression."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaignctl.store import Store
    from campaignctl.store.conn import Readable
    from campaignctl.store.leads import LeadRow


@dataclass
class Skipped:
    """Leads an expression could not be evaluated on (`lead.budget >= 3000000` on a lead whose
    budget is "N/A"): left out, as a campaign's audience leaves them out, and counted."""

    count: int = 0
    first: str | None = None  # the first one's lead and error

    def note(self) -> str | None:
        if not self.count:
            return None
        return (
            f"{self.count:,} lead(s) left out: the expression cannot be evaluated on them "
            f"(first: {self.first})"
        )


def matching_leads(
    session: Readable, where: str | None, skipped: Skipped | None = None
) -> Iterator[LeadRow]:
    """The leads an audience expression matches (all for None), in import order: what
    `leads list --where` shows and `leads tag --where` changes. A lead the expression fails on
    is left out and counted in `skipped`; an expression the sandbox refuses is an error.
    Leads are `store.leads.LeadRow`s, streamed: read them inside the transaction."""
    from campaignctl.audience import AudienceError, AudienceRefused, compile_audience
    from campaignctl.store import lead_context
    from campaignctl.store import leads as store_leads

    matches = compile_audience(where, "--where")
    for lead in store_leads.in_import_order(session):
        if where:
            try:
                if not matches(lead_context(lead)):
                    continue
            except AudienceRefused:
                raise
            except AudienceError as exc:
                if skipped is not None:
                    skipped.count += 1
                    if skipped.first is None:
                        who = lead.email or lead.phone or f"lead {lead.id}"
                        skipped.first = f"{who}: {exc.message.split(': ', 1)[-1]}"
                continue
        yield lead


def list_leads(
    store: Store,
    where: str | None = None,
    limit: int | None = None,
    skipped: Skipped | None = None,
) -> list[dict[str, Any]]:
    """Leads as JSON-ready objects (fixed fields, `optouts`, then attributes), filtered by an
    audience expression and cut at `limit`, in import order (all held: `iter_leads` streams)."""
    return list(iter_leads(store, where, limit, skipped))


def iter_leads(
    store: Store,
    where: str | None = None,
    limit: int | None = None,
    skipped: Skipped | None = None,
) -> Iterator[dict[str, Any]]:
    """`list_leads`, one lead at a time: the rows stream from the database's cursor, so memory
    stays flat in the number of leads (`leads list --format csv` on a million)."""
    from campaignctl.audience import compile_audience
    from campaignctl.store import leads as store_leads

    compile_audience(where, "--where")  # a bad expression fails before anything is read
    shown = 0
    with store.reads() as conn:
        optouts: dict[int, list[str]] = {}
        for lead_id, channel in store_leads.all_optouts(conn):
            optouts.setdefault(lead_id, []).append(channel)
        for lead in matching_leads(conn, where, skipped):
            if limit is not None and shown >= limit:
                break
            obj: dict[str, Any] = {
                "id": lead.id,
                "email": lead.email,
                "phone": lead.phone,
                "first_name": lead.first_name,
                "last_name": lead.last_name,
                "timezone": lead.timezone,
                "status": lead.status,
                "tags": list(lead.tags or []),
                "optouts": optouts.get(lead.id or 0, []),
            }
            for key, value in (lead.attrs or {}).items():
                obj.setdefault(key, value)
            shown += 1
            yield obj

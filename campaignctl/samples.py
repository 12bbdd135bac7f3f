"""The leads that `check` and `preview` render for: the database's, or a built-in sample.

Neither command creates a database: when the campaign file's database does not exist yet,
they use `BUILTIN_SAMPLES`, which covers the shapes that break templates (no first name, PH and
US phones, email only, phone only).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from campaignctl.audience import lead_context
from campaignctl.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store import Store

#: `check` renders for at most this many database leads (the first by id): enough to meet the
#: columns and blanks real data has, few enough that CI stays fast (a render is ~50 µs).
SAMPLE_LIMIT = 200

BUILTIN_SAMPLES: list[dict[str, Any]] = [
    lead_context(
        email="maria.santos@example.com",
        phone="+639171234567",
        first_name="María",
        last_name="Santos",
        timezone="Asia/Manila",
        status="new",
        tags=["buyer", "first-time"],
        attrs={"city": "Makati"},
    ),
    lead_context(
        email="jreyes@example.com",
        phone="+639189876543",
        first_name=None,
        last_name="Reyes",
        timezone=None,
        status="new",
        tags=["buyer"],
        attrs={},
    ),
    lead_context(
        email="john.miller@example.com",
        phone="+14155550134",
        first_name="John",
        last_name="Miller",
        timezone="America/Los_Angeles",
        status="new",
        tags=["investor"],
        attrs={"city": "San Francisco"},
    ),
    lead_context(
        email="ligaya.cruz@example.com",
        phone=None,
        first_name="Ligaya",
        last_name="Cruz",
        timezone=None,
        status="new",
        tags=["seller"],
        attrs={"city": "Quezon City"},
    ),
    lead_context(
        email=None,
        phone="+639285550188",
        first_name="Paolo",
        last_name=None,
        timezone=None,
        status="new",
        tags=["buyer"],
        attrs={},
    ),
    lead_context(
        email=None,
        phone="+12125550199",
        first_name=None,
        last_name=None,
        timezone=None,
        status="contacted",
        tags=[],
        attrs={},
    ),
]


def builtin_samples() -> list[dict[str, Any]]:
    """A fresh copy of the built-in sample leads (callers may not change the originals)."""
    return [dict(lead, tags=list(lead["tags"])) for lead in BUILTIN_SAMPLES]


def reachable(lead: dict[str, Any], kind: str) -> bool:
    """Whether a lead has the contact a channel of this kind sends to."""
    return bool(lead.get("email") if kind == "email" else lead.get("phone"))


def existing_store(cfg: Config) -> Store | None:
    """The campaign file's database when it already exists; never creates one."""
    from campaignctl.store import Store

    return Store.existing(cfg.database_url(), lazy=True)


def _iter_leads(store: Store, batch: int = 500) -> Iterator[dict[str, Any]]:
    """The database's leads by id, as templates see them: plain reads (`check` and `preview`
    load no SQLAlchemy for them on an up-to-date SQLite file)."""
    from campaignctl.audience import row_context
    from campaignctl.store import leads as store_leads

    last = 0
    with store.reads() as r:
        while True:
            rows = store_leads.rows_after(r, last, batch)
            if not rows:
                return
            for row in rows:
                yield row_context(row)
            last = rows[-1][0]


def database_samples(cfg: Config, limit: int = SAMPLE_LIMIT) -> list[dict[str, Any]] | None:
    """The first `limit` leads of the database (by id); None when there is no database yet."""
    store = existing_store(cfg)
    if store is None:
        return None
    try:
        out = []
        for lead in _iter_leads(store, batch=min(limit, 500)):
            out.append(lead)
            if len(out) >= limit:
                break
        return out
    finally:
        store.close()


def find_lead(cfg: Config, arg: str) -> tuple[dict[str, Any], str]:
    """A lead by email or phone: from the database, else from the built-in samples."""
    from campaignctl.classify import normalise_address
    from campaignctl.inbound import find_lead as find_stored

    value = normalise_address(arg.strip(), cfg.settings.default_region)
    if value is None:
        raise UsageError(
            f"--lead {arg!r}: not an email address or a phone number",
            "give the lead's email, or its phone with a country code (+63 917 123 4567)",
        )
    field = "email" if "@" in value else "phone"
    store = existing_store(cfg)
    if store is not None:
        from campaignctl.store import lead_context

        try:
            with store.read() as session:
                row = find_stored(session, value)
                if row is not None:
                    return lead_context(row), "from the database"
        finally:
            store.close()
    for lead in BUILTIN_SAMPLES:
        if str(lead.get(field, "")).lower() == value:
            return dict(lead), "built-in sample lead"
    where = "in the database or the built-in samples" if store else "(there is no database yet)"
    raise NotFoundError(
        f"no lead with {field} {value} {where}",
        "import leads with `campaignctl leads import FILE`, or leave out --lead",
    )


def first_matching(
    cfg: Config, audience: str | None, kind: str, where: str
) -> tuple[dict[str, Any], str]:
    """The first lead (database, else built-in sample) in the audience and reachable on `kind`."""
    from campaignctl.audience import compile_audience

    matches = compile_audience(audience, where)
    store = existing_store(cfg)
    if store is not None:
        try:
            for lead in _iter_leads(store):
                if reachable(lead, kind) and matches(lead):
                    return lead, "first lead in the audience, from the database"
        finally:
            store.close()
    for lead in BUILTIN_SAMPLES:
        if reachable(lead, kind) and matches(lead):
            return dict(lead), "first built-in sample lead in the audience"
    lead = next(x for x in BUILTIN_SAMPLES if reachable(x, kind))
    return dict(lead), "built-in sample lead (none in the audience)"

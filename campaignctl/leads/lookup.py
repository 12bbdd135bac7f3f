"""Which lead a person means by an email or phone typed on the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaignctl.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store import Lead
    from campaignctl.store.conn import Transaction


def find_lead(session: Transaction, cfg: Config, address: str) -> Lead:
    """The lead with this email or phone (in any usual format), or the error saying why none."""
    from campaignctl.classify import normalise_address
    from campaignctl.store import events

    norm = normalise_address(address, cfg.settings.default_region)
    if norm is None:
        raise UsageError(
            f"{address!r}: not an email address or a phone number",
            "give the lead's email, or its phone with a country code (+63 917 123 4567)",
        )
    # Search by the part least likely to be mistyped: the domain, or the last digits.
    part, field_ = (norm.rsplit("@", 1)[-1], "email") if "@" in norm else (norm[-4:], "phone")
    hint = f"find the lead with `campaignctl leads list --where \"'{part}' in {field_}\"`"
    lead = events.lead_by_address(session, norm)
    if lead is None or lead.id is None:
        raise NotFoundError(f"no lead with email or phone {address!r}", hint)
    return lead

"""Which lead a person means by an email or phone typed on the command line (`explain`,
`leads set`, `leads delete`, `leads optout`, `messages list --lead`, `send --test-to --lead`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from campaignctl.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from campaignctl.store import Lead
    from campaignctl.store.conn import Conn, Readable, Transaction


def find_lead(session: Transaction, address: str, default_region: str | None) -> Lead:
    """The lead with this email or phone (any usual format, read by the import's own rules;
    `default_region` for numbers without a country code), or the error saying why there is
    none, with the command that finds it."""
    from campaignctl.store import events

    norm = _normalised(address, default_region)
    lead = events.lead_by_address(session, norm)
    if lead is None or lead.id is None:
        raise _not_found(address, norm)
    return lead


def find_lead_row(conn: Conn, address: str, default_region: str | None) -> Any:
    """`find_lead` for a command that only reads: the lead's whole row (`store.leads.by_address`),
    without SQLModel's objects."""
    from campaignctl.store import leads

    norm = _normalised(address, default_region)
    row = leads.by_address(conn, norm)
    if row is None:
        raise _not_found(address, norm)
    return row


def find_lead_id(conn: Readable, address: str, default_region: str | None) -> int:
    """`find_lead`'s lead id, in plain SQL (`store.leads.id_by_address`)."""
    from campaignctl.store import leads

    norm = _normalised(address, default_region)
    found = leads.id_by_address(conn, norm)
    if found is None:
        raise _not_found(address, norm)
    return found


def _normalised(address: str, default_region: str | None) -> str:
    """The address as the store keeps it (a lower-case email, an E.164 phone), or a UsageError."""
    from campaignctl.leads.addresses import normalise_address

    norm, why = normalise_address(address, default_region)
    if norm is None:
        raise UsageError(
            f"{address!r}: not an email address or a phone number ({why})",
            "give the lead's email, or its phone with a country code (+63 917 123 4567)",
        )
    return norm.lower() if "@" in norm else norm


def _not_found(address: str, norm: str) -> NotFoundError:
    # search by the part least likely to be mistyped: the domain, or the last digits
    part, field_ = (norm.rsplit("@", 1)[-1], "email") if "@" in norm else (norm[-4:], "phone")
    return NotFoundError(
        f"no lead with email or phone {address!r}",
        f"find the lead with `campaignctl leads list --where \"'{part}' in {field_}\"`",
    )

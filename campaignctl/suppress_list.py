"""`suppress import`, `suppress list` and `suppress remove`: the do-not-contact list.

Addresses are kept only as keyed hashes (`leads.addresses`), whether or not they belong to a
lead; the engine checks them in the claim transaction (`suppression.suppressed_addresses`).
Each function is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaignctl.errors import NotFoundError, UsageError
from campaignctl.leads.addresses import address_hash, hasher, normalise_address
from campaignctl.store.suppression import ALL_CHANNELS

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store import Store

#: Characters of a hash that `suppress list` shows in its table.
HASH_SHOWN = 12
#: The sources of suppression rows.
ERASED, IMPORT, MANUAL = "erased", "import", "manual"


@dataclass
class SuppressReport:
    """What `suppress import` did: addresses added, already suppressed, rows rejected."""

    path: Path
    channel: str
    read: int = 0
    added: int = 0
    already: int = 0
    rejected: int = 0
    notes: list[str] = field(default_factory=list)  # "line N: ..."


def _addresses(path: Path, region: str | None, mapping: Sequence[str]) -> Iterator[Any]:
    """The file's rows as `leads import` reads them; a file without an email or phone column
    is refused with the `suppress import --map` that fixes it (never a hint to import the
    addresses as leads, which would make them contactable)."""
    from campaignctl.leads import LeadsInputError
    from campaignctl.leads.importer import read_addresses

    try:
        yield from read_addresses(path, region, mapping=mapping)
    except LeadsInputError as exc:
        if "no email or phone column" not in exc.message:
            raise
        raise LeadsInputError(
            exc.message,
            f"campaignctl suppress import {path} --map email=COLUMN (or --map phone=COLUMN)",
        ) from None


def import_file(
    open_store: Callable[[], Store],
    cfg: Config,
    path: Path,
    channel: str | None,
    now: datetime,
    mapping: Sequence[str] = (),
) -> SuppressReport:
    """Suppress every address of a CSV file (its email and phone columns, found as `leads
    import` finds them) on `channel` (None: every channel). The file is read and checked
    before the database is opened (a bad file creates none); one transaction."""
    from campaignctl.store import meta
    from campaignctl.store import suppression as store_suppression

    target = channel or ALL_CHANNELS
    report = SuppressReport(path, target)
    wanted: dict[str, int] = {}  # address -> first line
    for p in _addresses(path, cfg.settings.default_region, mapping):
        report.read += 1
        if p.reject is not None:
            report.rejected += 1
            report.notes.append(f"line {p.line}: rejected: {p.reject}")
            continue
        report.notes.extend(f"line {p.line}: {n}" for n in p.notes if "dropped" in n)
        for address in (p.email, p.phone):
            if address is not None:
                wanted.setdefault(address, p.line)
    with open_store().write() as session:
        key = meta.ensure_suppression_key(session, now)
        hashes = {address_hash(key, a): a for a in wanted}
        present = store_suppression.channels_of(session, hashes)
        rows = []
        for h in hashes:
            if present.get(h, set()) & {target, ALL_CHANNELS}:
                report.already += 1
                continue
            rows.append(
                {
                    "hash": h,
                    "channel": target,
                    "source": IMPORT,
                    "note": path.name,
                    "created_at": now,
                }
            )
        store_suppression.add(session, rows)
        report.added = len(rows)
    return report


def listing(store: Store) -> list[dict[str, Any]]:
    """Every suppressed hash: channel, source, note, when; and the lead it belongs to, when a
    current lead has that address (its email, else its phone)."""
    from campaignctl.store import leads as store_leads
    from campaignctl.store import meta
    from campaignctl.store import suppression as store_suppression

    with store.read() as session:
        rows = store_suppression.listing(session)
        key = meta.suppression_key(session)
        owners: dict[str, str] = {}
        if rows and key is not None:
            listed = {r.hash for r in rows}
            hash_of = hasher(key)
            for _id, email, phone, _tz in store_leads.plan_leads(session):
                for address in (email, phone):
                    if address and (h := hash_of(address)) in listed:
                        owners.setdefault(h, email or phone)
    return [
        {
            "hash": r.hash,
            "channel": r.channel,
            "source": r.source,
            "note": r.note,
            "created_at": r.created_at.isoformat(),
            "lead": owners.get(r.hash),
        }
        for r in rows
    ]


def _address(value: str, cfg: Config) -> str:
    address, why = normalise_address(value, cfg.settings.default_region)
    if address is None:
        raise UsageError(
            f"{value!r}: not an email address or a phone number ({why})",
            "give an email, or a phone with its country code (+63 917 123 4567)",
        )
    return address


def _listed(session: Any, address: str, channel: str | None) -> str | None:
    """The address's hash when it is on the list (on `channel`, or on any channel)."""
    from campaignctl.store import meta
    from campaignctl.store import suppression as store_suppression

    key = meta.suppression_key(session)
    if key is None:
        return None
    h = address_hash(key, address)
    channels = store_suppression.channels_of(session, [h]).get(h, set())
    return h if channels and (channel is None or channel in channels) else None


def remove(open_store: Callable[[], Store], cfg: Config, value: str, channel: str | None) -> int:
    """Take an address off the list (on `channel` only, or on every channel it is on);
    returns how many rows went. An address not on the list is a NotFoundError, raised
    before the database is opened for writing (so it creates none)."""
    from campaignctl.store import Store
    from campaignctl.store import suppression as store_suppression

    address = _address(value, cfg)
    reader = Store.for_reading(cfg)
    try:
        with reader.read() as session:
            listed = _listed(session, address, channel)
    finally:
        reader.close()
    gone = 0
    if listed is not None:
        with open_store().write() as session:
            h = _listed(session, address, channel)  # again, in the writing transaction
            gone = 0 if h is None else store_suppression.remove(session, h, channel)
    if not gone:
        where = f" on channel {channel}" if channel else ""
        if channel is not None and channel != ALL_CHANNELS:
            reader = Store.for_reading(cfg)
            try:
                with reader.read() as session:
                    everywhere = _listed(session, address, ALL_CHANNELS) is not None
            finally:
                reader.close()
            if everywhere:
                raise NotFoundError(
                    f"{value!r} is suppressed on every channel (*), not on channel {channel} "
                    "alone: nothing was removed",
                    f"to allow it again everywhere: campaignctl suppress remove {value!r} "
                    f"(then `suppress import` it for the channels it must stay off)",
                )
        raise NotFoundError(
            f"{value!r} is not on the suppression list{where}",
            "`campaignctl suppress list` shows what is suppressed, and on which channel",
        )
    return gone

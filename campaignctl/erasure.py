"""`leads delete`: erase a person, keep the counts, and never message their addresses again.

In one transaction: the lead's names, addresses, time zone, tags and attributes go (the row
stays, empty, so its id still holds its history together and it is never enrolled again); its
messages lose recipient, subject, body and error text but keep their state and timestamps; its
events keep their kind and time but lose what they quoted (reply text, addresses, subjects);
opt-outs lose their detail; pending messages are skipped ("lead erased") and active sequences
stopped. Each address the lead had goes on the suppression list for every channel as a keyed
hash (source "erased"), so a later import of the same person is never messaged. A `lead.erased`
journal row records it; the journal stays, but its tag changes lose which tag (docs/erasure.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store import Lead, Store
    from campaignctl.store.conn import Transaction

#: Event detail keys that hold no personal data: kept when a lead is erased (a click's verdict
#: stays, so rates do; its URL goes).
KEPT_DETAIL = ("status", "error_code", "by", "machine", "why")
#: The reason of the pending messages an erasure skips.
ERASED_REASON = "lead erased"


@dataclass(frozen=True)
class Erased:
    """What `leads delete` did."""

    lead_id: int
    addresses: int  # suppressed for every channel
    messages: int  # whose content was cleared (all of the lead's)
    skipped: int  # pending messages skipped
    stopped: int  # active sequences stopped
    events: int  # events whose detail was cleared


def _lead(session: Transaction, cfg: Config, who: str) -> Lead:
    """The lead `who` names, or the error saying why there is none."""
    from campaignctl.leads.lookup import find_lead

    return find_lead(session, who, cfg.settings.default_region)


def check(store: Store, cfg: Config, who: str) -> str:
    """The lead's address as stored; the error for an unknown lead, before anything is written
    (and before a confirmation is asked)."""
    with store.read() as session:
        lead = _lead(session, cfg, who)
        return str(lead.email or lead.phone)


def _scrub(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k in KEPT_DETAIL} | {"erased": True}


def erase(store: Store, cfg: Config, who: str, now: datetime) -> Erased:
    """Erase the lead `who` names (an email or a phone), in one write transaction."""
    from campaignctl.classify import normalise_address as inbound_address
    from campaignctl.engine.decide import Why
    from campaignctl.leads.addresses import address_hash
    from campaignctl.store import journal, meta
    from campaignctl.store import suppression as store_suppression
    from campaignctl.store.journal import Kind
    from campaignctl.suppress_list import ERASED

    region = cfg.settings.default_region
    with store.write() as session:
        lead = _lead(session, cfg, who)
        assert lead.id is not None
        lead_id = lead.id
        addresses = [a for a in (lead.email, lead.phone) if a]
        key = meta.ensure_suppression_key(session, now)
        store_suppression.add(
            session,
            [
                {
                    "hash": address_hash(key, a),
                    "channel": "*",
                    "source": ERASED,
                    "note": None,
                    "created_at": now,
                }
                for a in addresses
            ],
        )
        details = {
            e.id: _scrub(e.detail or {}) for e in store_suppression.events_of(session, lead.id)
        }
        # inbound from the lead's address that matched no lead (a reply before its import)
        for e in store_suppression.unlinked_events(session):
            quoted = (e.detail or {}).get("address") or (e.detail or {}).get("from")
            if isinstance(quoted, str) and inbound_address(quoted, region) in addresses:
                details[e.id] = _scrub(e.detail or {})
        done = store_suppression.erase_lead(
            session,
            lead.id,
            now,
            skip_reason=ERASED_REASON,
            skip_code=str(Why.LEAD_DELETED),
            event_details=details,
        )
        journal.add(
            session,
            [
                journal.entry(
                    Kind.LEAD_ERASED,
                    now,
                    {"addresses": len(addresses), **done},
                    lead_id=lead.id,
                    source="leads delete",
                )
            ],
        )
    return Erased(
        lead_id, len(addresses), done["messages"], done["skipped"], done["stopped"], done["events"]
    )

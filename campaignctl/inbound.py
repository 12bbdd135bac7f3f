"""What comes back, recorded: classified `Inbound` values become `Event` rows, and their effects.

`record` writes each value once, keyed by a provider-derived `source_id` (a second sync of the
same data records nothing twice), notes permanent delivery errors on our sent messages, and
hands opt-outs, opt-ins, bounces and stopping sequences to `suppression`, the one rule every
door shares. Classification itself is pure and lives in `classify`. The engine re-checks
opt-outs and enrolments when it claims a message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from campaignctl import suppression
from campaignctl.classify import (
    TWILIO_UNSUBSCRIBED,
    Inbound,
    Kind,
    Known,
    SentRef,
    normalise_address,
)
from campaignctl.config import STOP_REASONS
from campaignctl.store import events

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store import Lead
    from campaignctl.store.conn import Transaction


def load_known(session: Transaction, channel: str | None = None) -> Known:
    """Every message we handed (or may have handed) to a provider, optionally on one channel."""
    known = Known()
    # Oldest first, so a thread id maps to the thread's first message (the one that started it).
    for m in events.handed_over(session, channel):
        assert m.id is not None
        ref = SentRef(m.id, m.lead_id, m.channel, m.sent_at)
        if m.message_id:
            known.by_rfc_id[m.message_id.strip()] = ref
        if m.thread_id:
            known.by_thread.setdefault(m.thread_id, ref)
        if m.provider_id:
            known.by_provider_id[m.provider_id] = ref
    return known


def known_by_provider_id(session: Transaction, provider_ids: Collection[str]) -> Known:
    """Our messages with these provider ids only: what one webhook about them needs (where
    `load_known` reads every message, for a sync's many)."""
    known = Known()
    for m in events.handed_over_by_provider_id(session, provider_ids):
        assert m.id is not None
        assert m.provider_id is not None
        known.by_provider_id[m.provider_id] = SentRef(m.id, m.lead_id, m.channel, m.sent_at)
    return known


@dataclass
class Recorded:
    """What one `record` call did."""

    events: Counter[str] = field(default_factory=Counter)  # kind -> newly recorded
    duplicates: int = 0  # seen before (same source_id), or a status behind: nothing done
    unknown_leads: int = 0  # recorded, but no lead has that address
    stopped: int = 0  # enrolments stopped
    skipped: int = 0  # pending messages skipped
    kept: int = 0  # status callbacks about no message of ours yet: kept (`keep_early`)

    @property
    def total(self) -> int:
        return sum(self.events.values())

    def add(self, other: Recorded) -> None:
        """Count what `other` did in this one."""
        self.events.update(other.events)
        self.duplicates += other.duplicates
        self.unknown_leads += other.unknown_leads
        self.stopped += other.stopped
        self.skipped += other.skipped
        self.kept += other.kept


def find_lead(session: Transaction, address: str, default_region: str | None = None) -> Lead | None:
    """The lead with this email (any case) or phone (any format `phonenumbers` can read)."""
    norm = normalise_address(address, default_region)
    return None if norm is None else events.lead_by_address(session, norm)


def record(
    session: Transaction,
    items: Iterable[Inbound],
    *,
    stop_on: Mapping[str, Collection[str]],
    now: datetime,
    default_region: str | None = None,
) -> Recorded:
    """Record classified inbound data once each and apply its effects, in the caller's transaction.

    `stop_on` maps campaign names to the event kinds that end their sequences; a campaign no
    longer in the file stops on every kind (stopping is the safe side).
    """
    out = Recorded()
    for item in items:
        if events.seen(session, item.source_id) or _behind(session, item):
            out.duplicates += 1
            continue
        lead_id = item.lead_id
        if lead_id is None and item.address:
            norm = normalise_address(item.address, default_region)
            lead_id = None if norm is None else events.lead_id_by_address(session, norm)
        detail = dict(item.detail)
        if item.address:
            detail.setdefault("address", item.address)
        if item.error_code:
            detail["error_code"] = item.error_code
        if item.error:
            detail["error"] = item.error
        events.add_event(
            session,
            lead_id=lead_id,
            message_id=item.message_id,
            channel=item.channel,
            kind=item.kind.value,
            source_id=item.source_id,
            detail=detail,
            occurred_at=item.occurred_at,
            recorded_at=now,
        )
        out.events[item.kind.value] += 1
        if lead_id is None:
            out.unknown_leads += 1
            continue
        done = _apply(session, item, lead_id, stop_on, now)
        out.stopped += done.stopped
        out.skipped += done.skipped
    return out


def _behind(session: Transaction, item: Inbound) -> bool:
    """A delivery status that does not move its message forward (`events.DELIVERY_RANK`): a
    late "delivered" after "read", anything after "undelivered". Sync and webhooks see the
    same statuses in different orders; what is further along stays."""
    rank = events.delivery_rank(item.kind.value, item.detail)
    if rank == 0 or item.message_id is None:
        return False
    return rank <= events.delivery_rank_of(session, item.message_id)


def _apply(
    session: Transaction,
    item: Inbound,
    lead_id: int,
    stop_on: Mapping[str, Collection[str]],
    now: datetime,
) -> suppression.Effect:
    if item.kind in (Kind.UNDELIVERED, Kind.FAILED, Kind.BOUNCE) and item.message_id:
        _mark_message_error(session, item, now)
    ch = item.channel
    if item.kind is Kind.OPTOUT:
        return suppression.opt_out_in(
            session, lead_id, ch, source=item.source, detail=item.error, now=now, stop_on=stop_on
        )
    if item.kind in (Kind.UNDELIVERED, Kind.FAILED) and item.error_code == TWILIO_UNSUBSCRIBED:
        # The provider itself holds an opt-out we never saw (a STOP before our first sync).
        return suppression.opt_out_in(
            session, lead_id, ch, source="provider", detail=item.error, now=now, stop_on=stop_on
        )
    if item.kind is Kind.BOUNCE:
        # A bounced mailbox must not be mailed again on this channel.
        return suppression.bounce_in(
            session, lead_id, ch, code=item.error_code, now=now, stop_on=stop_on
        )
    if item.kind is Kind.OPTIN:
        suppression.opt_in_in(session, lead_id, ch)
    if item.kind.value in STOP_REASONS:  # a reply
        return suppression.stop_sequences_in(session, lead_id, item.kind.value, stop_on, now)
    return suppression.Effect()


def _mark_message_error(session: Transaction, item: Inbound, now: datetime) -> None:
    if not item.permanent or item.message_id is None:
        return
    # The state stays `sent`: the provider took it, and the at-most-once ledger must not move.
    events.mark_message_error(
        session, item.message_id, item.error_code or item.kind.value, item.error, now
    )


# ---------------------------------------------------------------- early status callbacks

#: How long a status callback about no message of ours is kept (`keep_early`): a sid that is
#: not ours by then never will be (a message another tool sent from the same number).
EARLY_KEPT_FOR = timedelta(days=7)


def record_status(
    cfg: Config,
    session: Transaction,
    channel: str,
    resource: dict[str, Any],
    now: datetime,
    stop_on: Mapping[str, Collection[str]] | None = None,
) -> Recorded:
    """One Twilio status callback with a final status (`classify.TWILIO_FINAL`), in the
    caller's transaction: recorded as `sync` records it (`sync.record_received`) when its sid
    is one of our messages'; else kept (`keep_early`), since the engine records a batch's sids
    only after sending the whole batch and Twilio often answers sooner."""
    from campaignctl.channels.base import Received
    from campaignctl.store import locks
    from campaignctl.sync import record_received

    sid = str(resource["sid"])
    known = known_by_provider_id(session, [sid])
    if not known.by_provider_id:
        # the engine may be recording this sid right now: under the lock its record step
        # takes before looking for kept callbacks, either we see its sid or it sees ours
        locks.hold(session, [locks.EARLY_CALLBACKS])
        known = known_by_provider_id(session, [sid])
    if not known.by_provider_id:
        keep_early(session, channel, resource, now)
        return Recorded(kept=1)
    received = Received(provider_id=sid, resource=resource)
    return record_received(cfg, session, channel, [received], known, now, stop_on)


def keep_early(session: Transaction, channel: str, resource: dict[str, Any], now: datetime) -> None:
    """Keep a status callback whose sid is not ours yet, once per (sid, status), until
    `settle_early` records it; those kept longer than `EARLY_KEPT_FOR` go at the same time."""
    from campaignctl.store import callbacks

    callbacks.forget_before(session, now - EARLY_KEPT_FOR)
    status = str(resource.get("status") or "").lower()
    # without the lead's number: a status is matched by its sid alone, and a row kept for a
    # message that is not ours holds nobody's personal data for its 7 days
    kept = {k: v for k, v in resource.items() if k not in ("to", "body")}
    callbacks.keep(
        session,
        channel=channel,
        provider_id=str(resource["sid"]),
        status=status,
        resource=kept,
        received_at=now,
    )


def settle_early(
    cfg: Config,
    session: Transaction,
    now: datetime,
    *,
    provider_ids: Collection[str] | None = None,
    channel: str | None = None,
    stop_on: Mapping[str, Collection[str]] | None = None,
) -> Recorded:
    """Record the kept callbacks whose sid is now one of our handed-over messages', exactly as
    the webhook would have (`sync.record_received`: a status behind the message's furthest
    does nothing), and delete them; in the caller's transaction.

    `provider_ids`: only the callbacks kept for these sids (a batch's, just recorded: one
    look-up through the sid's index, and no write when none was kept); else every kept one
    that is ours (on `channel` only, if given), and those kept longer than `EARLY_KEPT_FOR`
    are deleted (`sync`)."""
    from campaignctl.channels.base import Received
    from campaignctl.store import callbacks, locks
    from campaignctl.sync import record_received

    locks.hold(session, [locks.EARLY_CALLBACKS])
    if provider_ids is None:
        callbacks.forget_before(session, now - EARLY_KEPT_FOR)
        rows = callbacks.kept_ours(session, channel)
    else:
        rows = callbacks.kept_for(session, provider_ids)
    out = Recorded()
    if not rows:
        return out
    known = known_by_provider_id(session, {r.provider_id for r in rows})
    by_channel: dict[str, list[Received]] = {}
    settled: list[int] = []
    for r in rows:
        ref = known.by_provider_id.get(r.provider_id)
        if ref is None or ref.channel not in cfg.channels:
            continue  # not ours (yet), or its channel left the campaign file: kept, then expires
        resource = dict(r.resource)
        # a webhook carries no date: the time it came stands for it, as when recorded then
        resource["date_created"] = r.received_at.isoformat()
        by_channel.setdefault(ref.channel, []).append(Received(r.provider_id, resource=resource))
        settled.append(r.id)
    for name, items in by_channel.items():
        out.add(record_received(cfg, session, name, items, known, now, stop_on))
    callbacks.forget(session, settled)
    return out


# ---------------------------------------------------------------- sync cursors


def get_cursor(session: Transaction, channel: str) -> str | None:
    """Where the last sync of `channel` stopped (a Gmail historyId, a date), or None."""
    from campaignctl.store import meta

    return meta.cursor(session, channel)


def set_cursor(session: Transaction, channel: str, value: str, now: datetime) -> None:
    """Store where this sync of `channel` stopped; commit it with the events it covers."""
    from campaignctl.store import meta

    meta.set_cursor(session, channel, value, now)

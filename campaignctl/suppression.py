"""One rule for suppression: opt-outs, opt-ins, bounced addresses and stopped sequences.

Every door writes them here, so the effects are the same whichever way they came in: an inbound
STOP or unsubscribe reply and a bounce (`inbound.record`, during `sync`), a provider's refusal
during a send (Twilio 21610, the engine), `campaignctl leads optout`, and the web
unsubscribe link (`web.unsubscribe`, and its undo). The rule:

- An opt-out of a channel (or of `*`, every channel) is kept once per lead and channel. In the
  sequences that stop on it, the lead's pending messages on that channel are skipped ("opted out
  (sms)"). A bounce suppresses the address on its channel the same way ("bounced (email)").
- Then every active sequence of the lead whose campaign's `stop_on` names the kind (optout,
  bounce, reply) ends, and its other pending messages are skipped ("sequence stopped: optout").
  A campaign no longer in the file stops on every kind: stopping is the safe side.
- A sequence that does not stop goes on: the engine skips each later message on an opted-out
  channel when it comes due, and moves past it.
- An opt-in (START, UNSTOP, YES) removes that channel's opt-out; a manual `*` opt-out stays,
  because a person decided it.
- An address on the suppression list (`suppress import`, `leads delete`; kept as a keyed hash,
  see `leads.addresses`) is never messaged on its channel (or any, for `*`): the claim looks the
  candidates' addresses up (`suppressed_addresses`) and `engine.decide` skips the message
  ("address on the suppression list"); the lead's next step follows, as after an opt-out in a
  sequence that goes on. The address is suppressed, not the lead: a lead whose email is listed
  still gets its SMS.

Each function opens its own write transaction; its `_in` twin runs in the caller's, for callers
that commit these writes with others (`sync` with its events and cursor, the engine with a batch
of outcomes). Deciding what an inbound message means is `classify`'s job, not this module's.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from campaignctl.config import STOP_REASONS
from campaignctl.errors import NotFoundError
from campaignctl.store import events
from campaignctl.store.events import ALL_CHANNELS

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store import Enrolment, Lead, Store
    from campaignctl.store.conn import Readable, Transaction

#: Each campaign's `stop_on`: the kinds (reply, optout, bounce) that end its sequences.
StopOn = Mapping[str, Collection[str]]


@dataclass
class Effect:
    """What one suppression did to the lead's sequences and messages."""

    stopped: int = 0  # enrolments stopped
    skipped: int = 0  # pending messages skipped

    def __add__(self, other: Effect) -> Effect:
        return Effect(self.stopped + other.stopped, self.skipped + other.skipped)


def stop_on_of(cfg: Config) -> dict[str, list[str]]:
    """Each campaign's `stop_on`, as the functions here take it."""
    return {name: list(c.stop_on) for name, c in cfg.campaigns.items()}


# ---------------------------------------------------------------- the suppression list


#: A lead with no suppressed address.
NOT_SUPPRESSED: Mapping[str, set[str]] = {}


def suppressed_addresses(
    conn: Readable,
    leads: Iterable[tuple[int, str | None, str | None]],
    *,
    everything: bool = False,
) -> dict[int, dict[str, set[str]]]:
    """lead id -> {address: channels (`*`: every channel)} for the leads (id, email, phone)
    with an address on the suppression list; leads with none are left out. `everything` reads
    the whole list once instead of looking the addresses up (for callers that pass every lead).
    """
    from campaignctl.leads.addresses import hasher
    from campaignctl.store import meta
    from campaignctl.store import suppression as store_suppression

    key = meta.suppression_key(conn)
    if key is None:
        return {}
    table = store_suppression.everything(conn) if everything else None
    if table is not None and not table:
        return {}
    address_hash = hasher(key)
    hashed: list[tuple[int, str, str]] = [
        (lead_id, address, address_hash(address))
        for lead_id, *addresses in leads
        for address in addresses
        if address
    ]
    if table is None:
        table = store_suppression.channels_of(conn, [h for _, _, h in hashed])
    out: dict[int, dict[str, set[str]]] = {}
    for lead_id, address, h in hashed:
        channels = table.get(h)
        if channels:
            out.setdefault(lead_id, {})[address] = set(channels)
    return out


# ---------------------------------------------------------------- in the caller's transaction


def opt_out_in(
    session: Transaction,
    lead_id: int,
    channel: str,
    *,
    source: str,
    now: datetime,
    stop_on: StopOn,
    detail: str | None = None,
) -> Effect:
    """Opt the lead out of `channel` (`*`: every channel) and stop the sequences that stop on
    optout. `source` says who said so: keyword, unsubscribe, provider, manual."""
    skipped = _suppress(
        session, lead_id, channel, source, detail, now, "opted out", "optout", stop_on
    )
    return Effect(0, skipped) + stop_sequences_in(session, lead_id, "optout", stop_on, now)


def bounce_in(
    session: Transaction,
    lead_id: int,
    channel: str,
    *,
    code: str | None,
    now: datetime,
    stop_on: StopOn,
) -> Effect:
    """Suppress a bounced address on its channel and stop the sequences that stop on bounce."""
    skipped = _suppress(
        session, lead_id, channel, "bounce", code, now, "bounced", "bounce", stop_on
    )
    return Effect(0, skipped) + stop_sequences_in(session, lead_id, "bounce", stop_on, now)


def opt_in_in(session: Transaction, lead_id: int, channel: str) -> None:
    """Remove the channel's opt-out. A manual `*` opt-out stays: a person decided that."""
    events.remove_optout(session, lead_id, channel)
    session.flush()


def stop_sequences_in(
    session: Transaction, lead_id: int, kind: str, stop_on: StopOn, now: datetime
) -> Effect:
    """End the lead's active sequences whose campaign stops on `kind`; skip their pending
    messages."""
    active = events.active_enrolments(session, lead_id)
    campaigns = _stopping(active, kind, stop_on)
    for e in active:
        if e.campaign in campaigns:
            events.end_enrolment(session, e, "stopped", kind, now)
    if not campaigns:
        return Effect()
    skipped = events.skip_pending(
        session, lead_id, f"sequence stopped: {kind}", now, campaigns=campaigns
    )
    # Written now, so statements the caller runs next in this transaction see them.
    session.flush()
    return Effect(len(campaigns), skipped)


def _stopping(active: Collection[Enrolment], kind: str, stop_on: StopOn) -> list[str]:
    """The campaigns of these enrolments whose `stop_on` names `kind`."""
    return [e.campaign for e in active if kind in stop_on.get(e.campaign, STOP_REASONS)]


def _suppress(
    session: Transaction,
    lead_id: int,
    channel: str,
    source: str,
    detail: str | None,
    now: datetime,
    why: str,
    kind: str,
    stop_on: StopOn,
) -> int:
    """Keep the OptOut (once) and skip the lead's pending messages on that channel in the
    sequences that stop on `kind`. A sequence that goes on keeps its message: the engine skips
    it when it comes due and moves on to the next step (skipping it here would stall it)."""
    events.add_optout(session, lead_id, channel, source, detail, now)
    stopping = _stopping(events.active_enrolments(session, lead_id), kind, stop_on)
    if not stopping:
        return 0
    label = "all channels" if channel == ALL_CHANNELS else channel
    reason = f"{why} ({label})"
    return events.skip_pending(session, lead_id, reason, now, channel=channel, campaigns=stopping)


def asked_opt_out_in(
    session: Transaction,
    cfg: Config,
    lead_id: int,
    channel: str,
    *,
    source: str,
    by: str,
    now: datetime,
) -> Effect:
    """An opt-out a person asked for here rather than by a message (`leads optout`, the
    unsubscribe page): an `optout` event saying how (`by`), then `opt_out_in` with `source`."""
    _asked_event(session, "optout", source, lead_id, channel, by, now)
    return opt_out_in(session, lead_id, channel, source=source, now=now, stop_on=stop_on_of(cfg))


def asked_opt_in_in(
    session: Transaction, lead_id: int, channel: str, *, key: str, by: str, now: datetime
) -> None:
    """The opt-in twin of `asked_opt_out_in` (the unsubscribe page's undo); `key` prefixes the
    event's source id."""
    _asked_event(session, "optin", key, lead_id, channel, by, now)
    opt_in_in(session, lead_id, channel)


def _asked_event(
    session: Transaction,
    kind: str,
    key: str,
    lead_id: int,
    channel: str,
    by: str,
    now: datetime,
) -> None:
    events.add_event(
        session,
        lead_id=lead_id,
        message_id=None,
        channel=channel,
        kind=kind,
        source_id=f"{key}:{lead_id}:{channel}:{now.isoformat()}",
        detail={"by": by},
        occurred_at=now,
        recorded_at=now,
    )


# ---------------------------------------------------------------- each in its own transaction


def opt_out(
    store: Store,
    lead_id: int,
    channel: str,
    *,
    source: str,
    now: datetime,
    stop_on: StopOn,
    detail: str | None = None,
) -> Effect:
    """`opt_out_in`, in one write transaction of its own."""
    with store.write() as session:
        return opt_out_in(
            session, lead_id, channel, source=source, now=now, stop_on=stop_on, detail=detail
        )


def bounce(
    store: Store, lead_id: int, channel: str, *, code: str | None, now: datetime, stop_on: StopOn
) -> Effect:
    """`bounce_in`, in one write transaction of its own."""
    with store.write() as session:
        return bounce_in(session, lead_id, channel, code=code, now=now, stop_on=stop_on)


def opt_in(store: Store, lead_id: int, channel: str) -> None:
    """`opt_in_in`, in one write transaction of its own."""
    with store.write() as session:
        opt_in_in(session, lead_id, channel)


def stop_sequences(store: Store, lead_id: int, kind: str, stop_on: StopOn, now: datetime) -> Effect:
    """`stop_sequences_in`, in one write transaction of its own."""
    with store.write() as session:
        return stop_sequences_in(session, lead_id, kind, stop_on, now)


# ---------------------------------------------------------------- by hand (`leads optout`)


@dataclass(frozen=True)
class ManualOptOut:
    """What `leads optout` did."""

    lead: str  # the lead's email or phone, as stored
    channel: str  # a channel name, or `*`
    already: bool  # the lead was already opted out there: nothing changed
    stopped: int
    skipped: int


def check_opt_out(store: Store, cfg: Config, address: str, channel: str | None) -> None:
    """Refuse an unknown channel or lead before anything is written: `leads optout` asks the
    read-only store first, so that a failing opt-out creates no database."""
    with store.read() as session:
        _lead_to_opt_out(session, cfg, address, channel)


def opt_out_by_hand(
    store: Store, cfg: Config, address: str, channel: str | None, now: datetime
) -> ManualOptOut:
    """`leads optout`: an opt-out recorded as an event, with the effects of any other; no channel
    means every channel. One write transaction."""
    with store.write() as session:
        lead = _lead_to_opt_out(session, cfg, address, channel)
        assert lead.id is not None
        target = channel or ALL_CHANNELS
        name = lead.email or lead.phone or str(lead.id)
        if events.optout_channels(session, lead.id, [target, ALL_CHANNELS]):
            return ManualOptOut(name, target, True, 0, 0)
        done = asked_opt_out_in(
            session, cfg, lead.id, target, source="manual", by="campaignctl leads optout", now=now
        )
        return ManualOptOut(name, target, False, done.stopped, done.skipped)


def _lead_to_opt_out(session: Transaction, cfg: Config, address: str, channel: str | None) -> Lead:
    """The lead `leads optout` means, or the error saying why there is none."""
    from campaignctl.config import did_you_mean

    if channel is not None and channel not in cfg.channels:
        configured = ", ".join(cfg.channels) or "none"
        raise NotFoundError(
            f"{cfg.path}: no channel named {channel!r}{did_you_mean(channel, cfg.channels)} "
            f"(configured: {configured})",
            "omit --channel to opt the lead out of every channel",
        )
    from campaignctl.leads.lookup import find_lead

    return find_lead(session, address, cfg.settings.default_region)

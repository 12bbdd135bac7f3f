"""What to do with one due message: send it (to which address, which variant), defer it, or
skip it, and why.

A pure function of its arguments: no store, no channel, no clock. The engine acts on the
decision (`engine/claim.py`), the planner simulates with it (`planner.py`), and the reason is
what the message row stores and `status` (later `explain` and `plan`) shows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo

from campaignctl.breaker import Breaker
from campaignctl.config import Campaign, Step, Variant
from campaignctl.pacing import (
    DAY,
    HOUR,
    Hours,
    Limits,
    capacity,
    is_open,
    next_open,
    next_slot,
    warmup_day,
)
from campaignctl.timespec import PerSpan


class Why(StrEnum):
    """Why a message was skipped or deferred (its stored reason says it in words)."""

    WINDOW = "window"
    LIMIT = "limit"
    FREQUENCY_CAP = "frequency_cap"
    PRIORITY = "priority"
    BACKOFF = "backoff"
    BREAKER = "breaker"
    OPTED_OUT = "opted_out"
    SUPPRESSED = "suppressed"
    ENROLMENT_STOPPED = "enrolment_stopped"
    CAMPAIGN_ARCHIVED = "campaign_archived"
    NO_ADDRESS = "no_address"
    STEP_REMOVED = "step_removed"
    LEAD_DELETED = "lead_deleted"
    AB_WAIT = "ab_wait"


@dataclass(frozen=True, slots=True)
class Skip:
    """The message will never go."""

    why: Why
    reason: str

    def next_step_follows(self, campaign: Campaign) -> bool:
        """Whether the lead's next step follows this skip: after a missing or suppressed
        address, and after an opt-out unless the campaign's `stop_on` has `optout` (the
        enrolment stops then)."""
        if self.why is Why.OPTED_OUT:
            return "optout" not in campaign.stop_on
        return self.why in (Why.NO_ADDRESS, Why.SUPPRESSED)


@dataclass(frozen=True, slots=True)
class Defer:
    """The message goes later, at `until` at the earliest."""

    until: datetime
    why: Why
    reason: str


@dataclass(frozen=True, slots=True)
class Send:
    """The message goes now, to `address`, as `variant` (None: the step has no variants)."""

    address: str
    variant: str | None


Decision = Skip | Defer | Send


@dataclass(frozen=True, slots=True)
class Hold:
    """A channel that claims nothing at `now`: every due message on it waits, until `until`
    (None: until an outcome is recorded)."""

    why: Why
    until: datetime | None
    reason: str


def channel_hold(
    limits: Limits, history: list[datetime], breaker: Breaker, now: datetime
) -> Hold | None:
    """Why channel-wide, nothing may be claimed on a channel at `now`: its breaker is open, or
    a rolling daily or hourly limit is used up (`history`: its send instants, sorted). Pacing
    between two sends is not a hold. Due messages then wait in their campaigns' priority order."""
    if breaker.gate(now) == 0:
        failed, seen, last = breaker.failures()
        if breaker.probing:
            why = "waiting for the outcome of one probe send after an outage"
        else:
            why = f"paused after {failed} of {seen} sends failed" + (f" ({last})" if last else "")
        return Hold(Why.BREAKER, breaker.until, why)
    if capacity(limits, history, now) > 0:
        return None
    until = next_slot(limits.limits_only(), history, now)
    daily = limits.daily_at(now)
    spans = ((daily, DAY, "daily", "24 hours"), (limits.hourly, HOUR, "hourly", "hour"))
    for limit, span, name, last in spans:
        if limit and sum(1 for t in history if t > now - span) >= limit:
            if name == "daily" and limits.warmup is not None and daily != limits.daily:
                day = warmup_day(limits.first_send, now)
                ramp = f"warm-up day {day} of {limits.warmup.days}: {limit:,} today"
                return Hold(Why.LIMIT, until, f"daily limit reached ({ramp})")
            return Hold(Why.LIMIT, until, f"{name} limit reached ({limit:,} in the last {last})")
    return Hold(Why.LIMIT, until, "limit reached")  # pragma: no cover - capacity says used up


#: The enrolment of a message whose lead has no enrolment row, and of every planned message.
ACTIVE: tuple[str, str | None] = ("active", None)
_NONE: frozenset[str] = frozenset()
#: Hours for a caller that already knows the window is open (the planner parks closed zones).
ALWAYS_OPEN = Hours()


class Recipient(Protocol):
    """A lead as `decide` reads it."""

    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str | None: ...
    @property
    def phone(self) -> str | None: ...
    @property
    def tz(self) -> ZoneInfo: ...


@dataclass(frozen=True, slots=True)
class AbState:
    """Where a step's A/B test stands: not started (both None), started (`decide_at`: its
    first message plus `wait`), or decided (`winner`)."""

    decide_at: datetime | None = None
    winner: str | None = None


def _digest(campaign: str, step: str, lead_id: int | str) -> bytes:
    return hashlib.sha256(f"{campaign}\x00{step}\x00{lead_id}".encode()).digest()


def frequency_hold(cap: PerSpan, recent: Sequence[datetime], now: datetime) -> datetime | None:
    """When a lead with these `recent` sends may get one more under `cap` (None: now): the
    instant the oldest send that fills the rolling window leaves it."""
    counted = sorted(t for t in recent if t > now - cap.span)
    if len(counted) < cap.count:
        return None
    return counted[len(counted) - cap.count] + cap.span


def choose_variant(
    variants: list[Variant], campaign: str, step: str, lead_id: int | str
) -> Variant | None:
    """A weighted pick that is the same for a lead on every run (hash of campaign/step/lead).
    Draft variants (`status = "draft"`) are never picked: with only drafts, None (the step's
    own text)."""
    variants = [v for v in variants if v.status != "draft"]
    if not variants:
        return None
    return _pick(variants, _digest(campaign, step, lead_id))


def in_test_group(fraction: float, campaign: str, step: str, lead_id: int | str) -> bool:
    """Whether the lead is in the step's A/B test group: bytes 8-16 of the same digest whose
    first 8 pick the variant (independent of it), below `fraction` of 2**64."""
    return int.from_bytes(_digest(campaign, step, lead_id)[8:16], "big") < fraction * 2**64


def _pick(variants: list[Variant], digest: bytes) -> Variant:
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in variants)
    acc = 0.0
    for v in variants:
        acc += v.weight
        if point < acc:
            return v
    return variants[-1]


def decide(
    campaign_name: str,
    campaign: Campaign,
    step_name: str,
    channel: str,
    kind: str,
    lead: Recipient | None,
    optouts: Set[str],
    enrolment: tuple[str, str | None],
    hours: Hours,
    now: datetime,
    suppressed: Mapping[str, Set[str]] | None = None,
    ab: AbState | None = None,
    *,
    cap: PerSpan | None = None,
    recent: Sequence[datetime] = (),
) -> Decision:
    """Send, defer or skip the due message `step_name` of `campaign_name` on `channel` to `lead`
    (None when it was deleted) at `now`, given the lead's opt-outs (channels, or `*`), its
    enrolment (state and reason), the channel's hours, which of its addresses are on the
    suppression list (address -> channels, or `*`), for a step with an `ab` table its test's
    state (None: not started), and `settings.max_per_lead` (`cap`) with the lead's `recent`
    sends on every channel (sent, sending or uncertain). Checked in this order: the lead, the
    enrolment, opt-outs, the suppression list, the step, the window, the address, the frequency
    cap (a message that will never go is skipped rather than held), the A/B test."""
    if lead is None:
        return Skip(Why.LEAD_DELETED, "lead deleted")
    state, why = enrolment
    if state != "active":
        return Skip(Why.ENROLMENT_STOPPED, f"enrolment {state}" + (f": {why}" if why else ""))
    if optouts and optouts & {channel, "*"}:
        return Skip(Why.OPTED_OUT, f"opted out of {channel}")
    address = lead.email if kind == "email" else lead.phone
    if suppressed and address and suppressed.get(address, _NONE) & {channel, "*"}:
        return Skip(Why.SUPPRESSED, f"address on the suppression list ({channel})")
    for step in campaign.steps:
        if step.name == step_name:
            break
    else:
        return Skip(Why.STEP_REMOVED, "step removed from the campaign file")
    if not hours.always and not is_open(now, hours, lead.tz):
        return Defer(next_open(now, hours, lead.tz), Why.WINDOW, "outside the sending window")
    if not address:
        what = "email address" if kind == "email" else "phone number"
        return Skip(Why.NO_ADDRESS, f"lead has no {what}")
    if cap is not None and len(recent) >= cap.count:
        held = frequency_hold(cap, recent, now)
        if held is not None:
            return Defer(held, Why.FREQUENCY_CAP, f"frequency cap: {cap}")
    if step.ab is not None:
        return _ab(campaign_name, step, lead.id, address, ab or AbState(), now)
    variant = choose_variant(step.variants, campaign_name, step.name, lead.id)
    return Send(address, variant.name if variant else None)


def _ab(
    campaign: str, step: Step, lead_id: int, address: str, ab: AbState, now: datetime
) -> Decision:
    """A step with an A/B test: the winner once decided; before, the test group's leads get
    their variant and the others wait for the decision (a test not started yet starts now)."""
    assert step.ab is not None
    live = [v for v in step.variants if v.status != "draft"]
    decide_at = ab.decide_at or now + step.ab.wait
    winner = ab.winner
    if winner is None and decide_at <= now:
        winner = step.ab.fallback  # past the decision with none recorded: the fallback
    if winner is None:
        digest = _digest(campaign, step.name, lead_id)
        # the test group, as `in_test_group` says, without hashing twice
        if live and int.from_bytes(digest[8:16], "big") < step.ab.test_fraction * 2**64:
            return Send(address, _pick(live, digest).name)
        when = decide_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return Defer(decide_at, Why.AB_WAIT, f"held for the A/B winner (decided at {when})")
    if any(v.name == winner for v in live):
        return Send(address, winner)
    # the winner left the file or became a draft: the weighted pick
    variant = choose_variant(step.variants, campaign, step.name, lead_id)
    return Send(address, variant.name if variant else None)

"""`plan`: the coming days simulated with the engine's own pacing rules, in memory.

The simulation starts from what the database holds now (enrolments, pending messages, the last
24 hours of sends that limits count) and enrols the leads the next pass would enrol. It then
sends each message at the first instant the engine's rules allow: `pacing.next_slot` and
`capacity` for limits, `pacing.next_open` for windows, `pacing.due_after` for delays,
`pacing.priority_key` for who goes first, and the engine's own `engine.decide.decide` for
whether a message goes, is skipped, and whether the lead's next step follows. It assumes
sending runs continuously (a daemon, or `send` from a frequent cron) and that no new leads
arrive. A trigger campaign (enrolling on `campaignctl trigger` events) and a sequence with
`enrol_on` (enrolling on lead events) enrol nobody new in it: the events are yet to happen;
their pending messages are forecast like any other. Nothing is written.

The simulation always runs until nothing is left to send, or to `HORIZON_DAYS`, whatever the
number of days shown: a finish date depends on the data, never on `--days`. Only a campaign
still sending at the horizon gets an estimated finish (and the plan says the horizon was hit).
"""

from __future__ import annotations

import heapq
import math
import random
from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from campaignctl.audience import FIXED_FIELDS, row_context
from campaignctl.config import Campaign, Config
from campaignctl.engine.ab import AbKey, ab_states, ab_steps
from campaignctl.engine.context import by_priority, campaign_start
from campaignctl.engine.decide import (
    ACTIVE,
    ALWAYS_OPEN,
    AbState,
    Decision,
    Defer,
    Send,
    Skip,
    Why,
    decide,
)
from campaignctl.engine.enrol import AudienceMatcher
from campaignctl.pacing import (
    Hours,
    Limits,
    capacity,
    draw_jitter,
    lead_zone,
    next_close,
    next_open,
    next_slot,
    phone_zone_key,
    priority_key,
    wall_to_utc,
)
from campaignctl.store import Store, meta
from campaignctl.store import leads as store_leads
from campaignctl.store import messages as store_messages
from campaignctl.suppression import suppressed_addresses

#: A message held longer than this by a limit counts as having waited for it (pacing gaps of
#: a second or two do not).
LIMIT_WAIT = timedelta(minutes=1)
#: Days at the end of the simulation whose sends per channel estimate the pace after it.
RATE_WINDOW_DAYS = 7
#: How far the simulation runs at most (days from today, today being day 1): the largest
#: `--days`, so the days shown are always simulated and never change what lies beyond them.
HORIZON_DAYS = 400
#: Leads matched against the suppression list at a time, as they stream in.
SUPPRESSION_CHUNK = 50_000


@dataclass
class CampaignPlan:
    """One campaign's forecast."""

    name: str
    sends: int = 0
    remaining: int = 0  # messages still to send at the horizon (0 unless it was hit)
    finish: datetime | None = None  # the last send (estimated when it lies beyond the horizon)
    finish_day: int | None = None  # 1 is today
    estimated: bool = False  # finish extrapolated from the simulated pace per channel
    #: messages `decide` skips during the simulation: (step, Why code, reason) -> count
    skipped: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: messages that waited for a limit (over a minute), a window, a delay
    waits: dict[str, int] = field(default_factory=lambda: {"limit": 0, "window": 0, "delay": 0})


@dataclass(frozen=True)
class Headroom:
    """One channel on one day: its daily limit (None: it has none), the sends planned, and the
    spare sends left under the limit (None when unlimited)."""

    limit: int | None
    planned: int

    @property
    def spare(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.planned, 0)


@dataclass
class Plan:
    """Sends per day per channel, and when each campaign finishes."""

    start: datetime
    days: int  # days shown; the simulation itself ran to `horizon` or until nothing was left
    timezone: str
    channels: list[str]
    per_day: dict[date, dict[str, int]]
    campaigns: dict[str, CampaignPlan]
    horizon: datetime  # where the simulation stops: the midnight after its last day
    horizon_hit: bool = False  # something was still to send at the horizon
    daily_limits: dict[str, int | None] = field(default_factory=dict)
    #: per day shown, each channel's daily limit that day where it differs from `daily_limits`
    #: (a warm-up's ramp, as in effect at the end of the day)
    day_limits: dict[date, dict[str, int | None]] = field(default_factory=dict)

    def limit_on(self, d: date, channel: str) -> int | None:
        """The channel's daily limit on day `d` (following its warm-up)."""
        return self.day_limits.get(d, {}).get(channel, self.daily_limits.get(channel))

    def last_simulated_day(self) -> date:
        return self.horizon.astimezone(ZoneInfo(self.timezone)).date() - timedelta(days=1)

    def headroom(self) -> dict[date, dict[str, Headroom]]:
        """Per day shown and channel: the daily limit, the sends planned, the spare."""
        return {
            d: {ch: Headroom(self.limit_on(d, ch), counts.get(ch, 0)) for ch in self.channels}
            for d, counts in self.per_day.items()
        }

    def day_number(self, d: date) -> int:
        return (d - self.start.astimezone(ZoneInfo(self.timezone)).date()).days + 1


#: A lead's flags in `_Leads.flags`: known to the simulation, has an email, has a phone.
_KNOWN, _EMAIL, _PHONE = 1, 2, 4
_ADDRESSES = _EMAIL | _PHONE
_NO_OPTOUTS: frozenset[str] = frozenset()
#: Phone prefixes whose zone `_Leads` remembers (as many as `pacing` remembers itself).
_PREFIXES = 65_536
_NOT_LISTED: dict[str, set[str]] = {}


class _Lead:
    """One lead as `decide` reads it, built when one of its messages is decided. Its addresses
    are stand-ins ("@" and "+": the simulation only asks whether it has one) but for a lead on
    the suppression list, whose real addresses `decide` looks up."""

    __slots__ = ("email", "id", "optouts", "phone", "suppressed", "tz")

    def __init__(
        self,
        id: int,
        email: str | None,
        phone: str | None,
        tz: ZoneInfo,
        optouts: frozenset[str] | set[str],
        suppressed: dict[str, set[str]],
    ) -> None:
        self.id = id
        self.email = email
        self.phone = phone
        self.tz = tz
        self.optouts = optouts
        self.suppressed = suppressed


class _Leads:
    """Every lead the simulation knows, in packed arrays indexed by lead id (a flag byte and a
    zone number: 3 bytes a lead, so a million leads hold 3 MB, not the 400 MB of an object
    each), with the few that have opt-outs or listed addresses in dictionaries of their own.
    Zones are worked out as the leads are loaded, only when a channel keeps hours."""

    def __init__(self, default_tz: str, zones: bool) -> None:
        self.default_tz = default_tz
        self.zones = zones
        self.flags = array("B")
        self.zone_of = array("H")
        self.zone_list: list[ZoneInfo] = [lead_zone(None, None, default_tz)]
        self.zone_index: dict[tuple[str | None, str | None], int] = {}
        self.prefix_index: dict[str, int] = {}  # by `pacing.phone_zone_key`, at most _PREFIXES
        self.optouts: dict[int, set[str]] = {}
        self.listed: dict[int, tuple[str | None, str | None, dict[str, set[str]]]] = {}

    def add(self, lead_id: int, email: str | None, phone: str | None, timezone: str | None) -> None:
        if lead_id >= len(self.flags):
            grow = max(lead_id + 1 - len(self.flags), len(self.flags) // 2, 1024)
            self.flags.extend(bytes(grow))
            self.zone_of.extend(array("H", bytes(2 * grow)))
        self.flags[lead_id] = _KNOWN | (_EMAIL if email else 0) | (_PHONE if phone else 0)
        if self.zones:
            self.zone_of[lead_id] = self._zone(timezone, phone)

    def load(
        self,
        rows: Iterable[tuple[int, str | None, str | None, str | None]],
        listed: Callable[[list[tuple[int, str | None, str | None]]], None],
    ) -> None:
        """`add` each of `rows` (id, email, phone, timezone); `listed` is handed the leads with
        an address a chunk at a time (and empties it), to match them to the suppression list."""
        chunk: list[tuple[int, str | None, str | None]] = []
        flags, zone_of, zones = self.flags, self.zone_of, self.zones
        by_name = self.zone_index  # a valid zone name's number, under (name, None)
        for lead_id, email, phone, timezone in rows:
            if lead_id >= len(flags):
                grow = max(lead_id + 1 - len(flags), len(flags) // 2, 1024)
                flags.extend(bytes(grow))
                zone_of.extend(array("H", bytes(2 * grow)))
            flags[lead_id] = _KNOWN | (_EMAIL if email else 0) | (_PHONE if phone else 0)
            if zones:
                z = by_name.get((timezone, None)) if timezone else None
                zone_of[lead_id] = self._zone(timezone, phone) if z is None else z
            if email or phone:
                chunk.append((lead_id, email, phone))
                if len(chunk) >= SUPPRESSION_CHUNK:
                    listed(chunk)
        listed(chunk)

    def _zone(self, timezone: str | None, phone: str | None) -> int:
        prefix = None
        if timezone:
            i = self.zone_index.get((timezone, None))
        else:  # a phone's zone is that of its prefix (`pacing.phone_zone_key`), when it has one
            prefix = phone_zone_key(phone) if phone else None
            i = self.prefix_index.get(prefix) if prefix else None
        if i is None:
            tz = lead_zone(timezone, phone, self.default_tz)
            try:
                i = self.zone_list.index(tz)
            except ValueError:
                i = len(self.zone_list)
                self.zone_list.append(tz)
            if timezone and tz.key == timezone:  # a valid zone name: the same for every lead
                self.zone_index[timezone, None] = i
            elif prefix and len(self.prefix_index) < _PREFIXES:
                self.prefix_index[prefix] = i
        return i

    def __contains__(self, lead_id: int) -> bool:
        return 0 <= lead_id < len(self.flags) and bool(self.flags[lead_id] & _KNOWN)

    def tz(self, lead_id: int) -> ZoneInfo:
        return self.zone_list[self.zone_of[lead_id]]

    def opted_out(self, lead_id: int) -> frozenset[str] | set[str]:
        return self.optouts.get(lead_id, _NO_OPTOUTS)

    def __getitem__(self, lead_id: int) -> _Lead:
        """The lead as `decide` reads it."""
        flags = self.flags[lead_id]
        listed = self.listed.get(lead_id)
        if listed is not None:
            email, phone, suppressed = listed
        else:
            email = "@" if flags & _EMAIL else None
            phone = "+" if flags & _PHONE else None
            suppressed = _NOT_LISTED
        return _Lead(lead_id, email, phone, self.tz(lead_id), self.opted_out(lead_id), suppressed)


_FAR = datetime.max.replace(tzinfo=UTC)
_AB_NOT_STARTED = AbState()
_TICK = timedelta(microseconds=1)
_DAWN = datetime.min.replace(tzinfo=UTC)


class _Clock:
    """One channel's hours in one zone, as the open stretches `pacing.next_open` and
    `pacing.next_close` cut time into, found as far as asked and then answered by bisection:
    the same answers as asking `pacing` about each instant, without a zone conversion each."""

    __slots__ = ("closes", "hi", "hours", "lo", "opens", "tz")

    def __init__(self, hours: Hours, tz: ZoneInfo, since: datetime):
        self.hours = hours
        self.tz = tz
        self.lo = self.hi = since  # every open stretch meeting [lo, hi) is in opens/closes
        self.opens: list[datetime] = []
        self.closes: list[datetime] = []

    def next_open(self, t: datetime) -> datetime:
        """`pacing.next_open(t, hours, tz)`: `t` itself when open."""
        if t < self.lo:
            return next_open(t, self.hours, self.tz)
        while t >= self.hi:
            a = next_open(self.hi, self.hours, self.tz)
            b = next_close(a, self.hours, self.tz) or _FAR
            self.opens.append(a)
            self.closes.append(b)
            self.hi = b
        i = bisect_right(self.opens, t) - 1
        if i >= 0 and t < self.closes[i]:
            return t
        return self.opens[i + 1]

    def open_until(self, t: datetime) -> datetime:
        """When the open stretch holding `t` closes (`t` itself must be open, and at or after
        the instant the clock was made from)."""
        self.next_open(t)  # the stretches are found as far as `t`
        return self.closes[bisect_right(self.opens, t) - 1]


@dataclass(frozen=True, slots=True)
class _Step:
    """What the simulation reads of a campaign's step, looked up once."""

    name: str
    channel: str
    delay: timedelta
    always: bool  # the channel has no window
    priority: int  # the campaign's
    start: datetime | None  # the campaign's start_at
    waits: dict[str, int]  # the campaign plan's
    picks: bool  # a variant to pick (one not a draft): `decide` hashes the lead for it


class _Run:
    """Messages of one campaign step due at one instant, for leads of one zone, in the order
    the engine would take them (their sequence numbers ascending): moved as one. Lead ids and
    sequence numbers are packed arrays: 16 bytes a message."""

    __slots__ = ("campaign", "due", "leads", "pos", "priority", "seqs", "step")

    def __init__(
        self,
        priority: int,
        due: datetime,
        campaign: str,
        step: int,
        leads: array[int],
        seqs: array[int],
    ) -> None:
        self.priority = priority
        self.due = due
        self.campaign = campaign
        self.step = step
        self.leads = leads
        self.seqs = seqs
        self.pos = 0  # members before it have been taken

    def head(self) -> tuple[int, datetime, int]:
        return priority_key(self.priority, self.due, self.seqs[self.pos])


def _head(queue: deque[_Run]) -> tuple[int, datetime, int]:
    """Where a queue's first message stands in the engine's order."""
    return queue[0].head()


class _Simulation:
    """The engine's decisions replayed in memory, event by event.

    Messages move in runs (`_Run`): the messages of one campaign step that fall due at the
    same instant for leads of one zone, which the engine would take one after the other.
    Due runs wait in one heap. Ready runs wait per channel in one queue per time zone and
    campaign priority: messages become ready in the order of (due time, sequence), so each
    queue is first in, first out, and the best message is the best of the queues' heads; a
    run is taken up to the next queue's head, or the channel's capacity at that instant. A
    window that closes for a zone parks that zone's queues as a whole. `decide` is still
    asked about every message, in the engine's order. While one channel alone has anything to
    do, its sends follow one another in one stretch (`_solo`), instead of an event each.
    """

    def __init__(self, cfg: Config, now: datetime, horizon: datetime, rng: random.Random):
        self.cfg = cfg
        self.now = now
        self.horizon = horizon
        self.rng = rng
        self.limits = {n: Limits.of(c) for n, c in cfg.channels.items()}
        self.hours = {n: Hours(c.window, c.days) for n, c in cfg.channels.items()}
        self.always = {n: h.always for n, h in self.hours.items()}
        self.kinds = {n: cfg.channel_kind(n) for n in cfg.channels}
        self.history: dict[str, list[datetime]] = {n: [] for n in cfg.channels}
        self.jitter: dict[str, timedelta] = {n: timedelta(0) for n in cfg.channels}
        #: per channel, `next_slot` asked at the dawn of time: the next slot at `t` is the
        #: later of `t` and this (None: to ask again, after a send on the channel)
        self.free: dict[str, datetime | None] = dict.fromkeys(cfg.channels)
        self.due: list[tuple[datetime, int, _Run]] = []  # due, first sequence number, run
        #: per queue (channel, zone key, priority) and due instant, the run pushed to it last,
        #: while none is released: a message for the same campaign step joins it, since no
        #: message can come between them in that queue
        self.tails: dict[tuple[str, str, int, datetime], _Run] = {}
        #: channel -> (zone key, priority) -> ready runs, oldest first
        self.ready: dict[str, dict[tuple[str, int], deque[_Run]]] = {n: {} for n in cfg.channels}
        self.clocks: dict[tuple[str, str], _Clock] = {}
        self.step_info: dict[str, list[_Step]] = {}
        self.seq = 0
        self.tz = ZoneInfo(cfg.settings.timezone)
        self.per_day: dict[date, dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(cfg.channels, 0)
        )
        self.plans: dict[str, CampaignPlan] = {}
        self.camps: dict[str, Campaign] = {}
        self.leads = _Leads(cfg.settings.timezone, zones=False)
        self.start_at: dict[str, datetime | None] = {}
        #: A/B steps' tests as the database holds them, then as the simulation moves them on
        self.ab: dict[AbKey, AbState] = {}
        #: settings.max_per_lead, and each lead's sends it counts (loaded, then simulated)
        self.cap = cfg.settings.max_per_lead
        self.lead_sends: dict[int, list[datetime]] = defaultdict(list)
        #: (campaign, step) -> a lead's address flags -> what `decide` says to a plain lead
        self.same: dict[tuple[str, int], dict[int, Decision]] = defaultdict(dict)
        self._slot: datetime | None = None  # `_channel_event`'s last next slot
        #: `_day_of`'s last day: its counts, and the instants it spans [from, to)
        self._day_counts: dict[str, int] = {}
        self._day_from = self._day_to = _DAWN

    def _zkey(self, ch: str, lead: int) -> str:
        """The zone key of `lead`'s queue on `ch` ("" for a channel without a window)."""
        if self.always[ch]:
            return ""
        return self.clock(ch, self.leads.tz(lead)).tz.key

    def push(self, due: datetime, campaign: str, step: int, lead: int) -> None:
        """One message due at `due`, after every message pushed so far."""
        self.seq += 1
        st = self._steps(campaign)[step]
        zkey = self._zkey(st.channel, lead)
        target = (st.channel, zkey, st.priority, due)
        run = self.tails.get(target)
        if run is not None and run.campaign == campaign and run.step == step:
            run.leads.append(lead)
            run.seqs.append(self.seq)
            return
        run = self.tails[target] = _Run(
            st.priority, due, campaign, step, array("q", (lead,)), array("q", (self.seq,))
        )
        heapq.heappush(self.due, (due, self.seq, run))

    def push_all(self, due: datetime, campaign: str, step: int, leads: list[int]) -> None:
        """`push` for each of `leads` in turn (messages of one campaign step due at `due`)."""
        st = self._steps(campaign)[step]
        # per zone number, the run its messages join (`push` would find it among the tails)
        runs: dict[int, _Run] = {}
        zone_of = self.leads.zone_of
        tails = self.tails
        seq = self.seq
        always = st.always
        for lead in leads:
            seq += 1
            z = 0 if always else zone_of[lead]
            run = runs.get(z)
            if run is None:
                zkey = "" if always else self.clock(st.channel, self.leads.zone_list[z]).tz.key
                target = (st.channel, zkey, st.priority, due)
                run = tails.get(target)
                if run is None or run.campaign != campaign or run.step != step:
                    run = tails[target] = _Run(
                        st.priority, due, campaign, step, array("q"), array("q")
                    )
                    heapq.heappush(self.due, (due, seq, run))
                runs[z] = run
            run.leads.append(lead)
            run.seqs.append(seq)
        self.seq = seq

    def clock(self, ch: str, tz: ZoneInfo) -> _Clock:
        c = self.clocks.get((ch, tz.key))
        if c is None:
            c = self.clocks[ch, tz.key] = _Clock(self.hours[ch], tz, self.now)
        return c

    def _steps(self, campaign: str) -> list[_Step]:
        steps = self.step_info.get(campaign)
        if steps is None:
            camp = self.camps[campaign]
            steps = self.step_info[campaign] = [
                _Step(
                    st.name,
                    st.channel,
                    st.delay,
                    self.always[st.channel],
                    camp.priority,
                    self.start_at[campaign],
                    self.plans[campaign].waits,
                    any(v.status != "draft" for v in st.variants),
                )
                for st in camp.steps
            ]
        return steps

    def schedule(self, campaign: str, step: int, lead: _Lead, base: datetime) -> None:
        """The next step after `base` (enrolment or a send), as the engine's `_advance` does."""
        self.schedule_all(campaign, step, [lead.id], base)

    def schedule_all(
        self, campaign: str, step: int, leads: list[int] | array[int], base: datetime
    ) -> None:
        """The next step of each of `leads` (in this order) after `base`, as the engine's
        `_advance` does (`pacing.due_after`, its window answered by each zone's clock)."""
        steps = self._steps(campaign)
        if step >= len(steps) or not leads:
            return
        st = steps[step]
        raw = base + st.delay
        if st.start is not None and raw < st.start:
            raw = st.start
        if raw > base:
            st.waits["delay"] += len(leads)
        if st.always:
            if len(leads) == 1:
                self.push(raw, campaign, step, leads[0])
                return
            first = self.seq + 1
            self.seq += len(leads)
            seqs = array("q", range(first, self.seq + 1))
            run = _Run(st.priority, raw, campaign, step, array("q", leads), seqs)
            heapq.heappush(self.due, (raw, first, run))
            self.tails[st.channel, "", st.priority, raw] = run
            return
        if len(leads) == 1:
            due = self.clock(st.channel, self.leads.tz(leads[0])).next_open(raw)
            if due > raw:
                st.waits["window"] += 1
            self.push(due, campaign, step, leads[0])
            return
        # grouped by zone number (one per zone), each group's leads and sequence numbers
        groups: dict[int, tuple[array[int], array[int]]] = {}
        zone_of = self.leads.zone_of
        seq = self.seq
        for lead_id in leads:
            seq += 1
            z = zone_of[lead_id]
            group = groups.get(z)
            if group is None:
                group = groups[z] = (array("q"), array("q"))
            group[0].append(lead_id)
            group[1].append(seq)
        self.seq = seq
        for z, (members, seqs) in groups.items():
            clock = self.clock(st.channel, self.leads.zone_list[z])
            due = clock.next_open(raw)
            if due > raw:
                st.waits["window"] += len(members)
            run = _Run(st.priority, due, campaign, step, members, seqs)
            heapq.heappush(self.due, (due, seqs[0], run))
            self.tails[st.channel, clock.tz.key, st.priority, due] = run

    def run(self) -> None:
        t = self.now
        horizon = self.horizon
        while True:
            self._release(t)
            for ch in self.ready:
                self._send_at(ch, t)
            if self.due and self.due[0][0] <= t:
                continue  # a zero-delay next step became due at this very instant
            while True:
                nxt, solo = self._next_event(t)
                if nxt is None or nxt >= horizon:
                    return
                if solo is None:
                    t = nxt
                    break
                t, again = self._solo(solo, nxt)
                if again:
                    break

    def _solo(self, ch: str, t: datetime) -> tuple[datetime, bool]:
        """Send on channel `ch` alone, from `t` (its next slot, when nothing else happens: no
        message falls due, no other channel sends, none of its zones opens or closes) for as
        long as that holds: the same sends, in the same order, as instant by instant through
        `run`, without looking at every queue at every instant (a paced channel's sends are
        each an instant of their own). Returns the last instant handled, and whether `run`
        must handle it again (a next step fell due at it)."""
        queues = self.ready[ch]
        bound = self.horizon
        for other, oqueues in self.ready.items():
            if other == ch:
                continue
            ev = self._channel_event(other, oqueues, t)
            if ev is not None and ev < bound:
                bound = ev
        open_queues: list[deque[_Run]] = []
        always = self.always[ch]
        for (zkey, _prio), q in queues.items():
            if not q:
                continue
            if always:
                open_queues.append(q)
                continue
            clock = self.clocks[ch, zkey]
            opens = clock.next_open(t)
            if opens == t:
                open_queues.append(q)
                edge = clock.open_until(t)
            else:
                edge = opens
            if edge < bound:
                bound = edge
        due = self.due
        tick = timedelta(microseconds=1)
        one = self.limits[ch].paced and self.cap is None  # at most one message an instant
        while True:
            if not (one and self._send_plain(ch, t, open_queues)):
                self._send_at(ch, t, open_queues)
            if due and due[0][0] <= t:
                return t, True
            if not open_queues:
                return t, False
            nxt = self._free(ch)
            if nxt <= t:
                nxt = t + tick
            if nxt >= bound or (due and due[0][0] <= nxt):
                return t, False
            t = nxt

    def _send_plain(self, ch: str, t: datetime, open_queues: list[deque[_Run]]) -> bool:
        """`_send_at` on a paced channel (one message an instant) when the best message is a
        plain one `decide` already said Send to (see `_send_at`): sent here, in fewer steps.
        False when it is not (then nothing is done)."""
        lim = self.limits[ch]
        if not open_queues or (lim.warmup is not None and lim.first_send is None):
            return False
        hist = self.history[ch]
        if capacity(lim, hist, t) < 1:
            return False
        best = open_queues[0] if len(open_queues) == 1 else min(open_queues, key=_head)
        run = best[0]
        campaign, step = run.campaign, run.step
        camp = self.camps[campaign]
        if self._steps(campaign)[step].picks or camp.steps[step].ab is not None:
            return False
        lead_id = run.leads[run.pos]
        leads = self.leads
        if lead_id in leads.optouts or lead_id in leads.listed:
            return False
        decision = self.same[campaign, step].get(leads.flags[lead_id] & _ADDRESSES)
        if not isinstance(decision, Send):
            return False
        run.pos += 1
        if run.pos == len(run.leads):
            best.popleft()
            if not best:
                open_queues.remove(best)
        plan = self.plans[campaign]
        if run.due < t - LIMIT_WAIT:
            plan.waits["limit"] += 1
        if lim.jitter:
            self.jitter[ch] = draw_jitter(lim, self.rng)
        hist.append(t)
        plan.sends += 1
        plan.finish = t
        if step + 1 < len(camp.steps):
            self.schedule_all(campaign, step + 1, [lead_id], t)
        self.free[ch] = None
        self._day_of(t)[ch] += 1
        return True

    def _release(self, t: datetime) -> None:
        due_heap = self.due
        pop = heapq.heappop
        if due_heap and due_heap[0][0] <= t:
            self.tails.clear()
        while due_heap and due_heap[0][0] <= t:
            run = pop(due_heap)[2]
            ch = self._steps(run.campaign)[run.step].channel
            zkey = self._zkey(ch, run.leads[0])
            queues = self.ready[ch]
            q = queues.get((zkey, run.priority))
            if q is None:
                q = queues[zkey, run.priority] = deque()
            q.append(run)

    def _open(self, ch: str, zkey: str, t: datetime) -> datetime:
        """When the queue of zone `zkey` on `ch` may send next: `t` when open."""
        if zkey == "":
            return t
        return self.clocks[ch, zkey].next_open(t)

    def _next_event(self, t: datetime) -> tuple[datetime | None, str | None]:
        """The next instant anything happens after `t`, and the channel that alone acts then
        at its next slot (None: a message falls due, a window opens, or several channels act)."""
        nxt = self.due[0][0] if self.due else None
        solo: str | None = None
        for ch, queues in self.ready.items():
            ev = self._channel_event(ch, queues, t)
            if ev is None:
                continue
            if nxt is None or ev < nxt:
                nxt = ev
                solo = ch if ev == self._slot else None
            elif ev == nxt:
                solo = None
        return nxt, solo

    def _channel_event(
        self, ch: str, queues: dict[tuple[str, int], deque[_Run]], t: datetime
    ) -> datetime | None:
        """The next instant after `t` channel `ch` may send: one of its zones opening, or its
        next slot while a zone is open (then also in `_slot`, else `_slot` is None)."""
        ev: datetime | None = None
        waiting_for_limit = False
        for (zkey, _prio), queue in queues.items():
            if not queue:
                continue
            opens = self._open(ch, zkey, t)
            if opens == t:
                waiting_for_limit = True
            elif ev is None or opens < ev:
                ev = opens
        self._slot = None
        if waiting_for_limit:
            slot = max(self._free(ch), t + timedelta(microseconds=1))
            if ev is None or slot < ev:
                ev = self._slot = slot
        return ev

    def _free(self, ch: str) -> datetime:
        free = self.free[ch]
        if free is None:
            lim, hist = self.limits[ch], self.history[ch]
            free = self.free[ch] = next_slot(lim, hist, _DAWN, self.jitter[ch])
        return free

    def _send_at(self, ch: str, t: datetime, open_queues: list[deque[_Run]] | None = None) -> None:
        """Send on `ch` at `t` what its limits allow, best message first. `open_queues`: its
        non-empty queues open at `t`, when the caller knows them (emptied ones are taken out)."""
        if t < self._free(ch):
            return  # a limit or the pacing holds the channel (next_slot > t)
        lim = self.limits[ch]
        hist = self.history[ch]
        kind = self.kinds[ch]
        if open_queues is None:
            open_queues = [
                q for (z, _p), q in self.ready[ch].items() if q and self._open(ch, z, t) == t
            ]
        if not open_queues:
            return
        cap = capacity(lim, hist, t)  # at least 1, since next_slot(t) is t
        sent = 0
        waited = t - LIMIT_WAIT
        while open_queues and sent < cap:
            # the best head, and how far its run stays ahead of every other queue's head
            if len(open_queues) == 1:
                best = open_queues[0]
                run = best[0]
                end = len(run.leads)
            else:
                heads = sorted((q[0].head(), i) for i, q in enumerate(open_queues))
                best = open_queues[heads[0][1]]
                run = best[0]
                end = len(run.leads)
                other = heads[1][0]
                if (run.priority, run.due) == other[:2]:
                    end = bisect_left(run.seqs, other[2], run.pos, end)
            campaign, step = run.campaign, run.step
            camp = self.camps[campaign]
            plan = self.plans[campaign]
            name = self._steps(campaign)[step].name
            follow: list[int] = []
            i = run.pos
            taken = 0
            ab = self._ab_state(campaign, step, t)
            # A lead without opt-outs or listed addresses, on a step without an A/B test or a
            # variant to pick and with no frequency cap, gets the same decision as any other
            # that has the same addresses: `decide` reads nothing else of it then (the window
            # is open, the enrolment active). Asked once per step for each such kind of lead.
            plain = ab is None and self.cap is None and not self._steps(campaign)[step].picks
            same = self.same[campaign, step]
            leads, flags = self.leads, self.leads.flags
            while i < end and sent + taken < cap:
                lead_id = run.leads[i]
                i += 1
                if (
                    plain
                    and lead_id not in leads.optouts
                    and lead_id not in leads.listed
                    and (flags[lead_id] & _ADDRESSES) in same
                ):
                    decision = same[flags[lead_id] & _ADDRESSES]
                else:
                    lead = leads[lead_id]
                    # the engine's own rule; the window is open (closed zones are parked), the
                    # enrolment active (stopped ones are left out when pending messages are
                    # loaded)
                    decision = decide(
                        campaign,
                        camp,
                        name,
                        ch,
                        kind,
                        lead,
                        lead.optouts,
                        ACTIVE,
                        ALWAYS_OPEN,
                        t,
                        suppressed=lead.suppressed,
                        ab=ab,
                        cap=self.cap,
                        recent=self.lead_sends.get(lead_id, ()) if self.cap else (),
                    )
                    if plain and lead.optouts is _NO_OPTOUTS and lead.suppressed is _NOT_LISTED:
                        same[flags[lead_id] & _ADDRESSES] = decision
                if (
                    ab is not None
                    and ab == _AB_NOT_STARTED
                    and (
                        isinstance(decision, Send)
                        or (isinstance(decision, Defer) and decision.why is Why.AB_WAIT)
                    )
                ):  # this message starts the step's A/B test: the rest of the run sees it
                    wait = camp.steps[step].ab.wait  # type: ignore[union-attr]
                    self.ab[(campaign, name)] = AbState(decide_at=t + wait)
                    ab = self._ab_state(campaign, step, t)
                if isinstance(decision, Defer):  # the frequency cap or an A/B winner: it goes
                    self.push(decision.until, campaign, step, lead_id)  # later, as a row would
                    continue
                if not isinstance(decision, Send):
                    if isinstance(decision, Skip):
                        k = (name, decision.why.value, decision.reason)
                        plan.skipped[k] = plan.skipped.get(k, 0) + 1
                        if decision.next_step_follows(camp):
                            follow.append(lead_id)
                    continue
                taken += 1
                if self.cap:
                    recent = self.lead_sends[lead_id]
                    recent.append(t)
                    if len(recent) > 4 * self.cap.count:  # forget what left the window long ago
                        recent[:] = [x for x in recent if x > t - self.cap.span]
                if lim.warmup is not None and lim.first_send is None:
                    self.limits[ch] = lim = lim.started(t)  # the warm-up's days count from here
                if lim.jitter:
                    self.jitter[ch] = draw_jitter(lim, self.rng)
                follow.append(lead_id)
            run.pos = i
            if i == len(run.leads):
                best.popleft()
                if not best:
                    open_queues.remove(best)
            if taken:
                if run.due < waited:
                    plan.waits["limit"] += taken
                hist.extend([t] * taken)
                sent += taken
                plan.sends += taken
                plan.finish = t
            if follow and step + 1 < len(camp.steps):
                self.schedule_all(campaign, step + 1, follow, t)
        if sent:
            self.free[ch] = None
            self._day_of(t)[ch] += sent

    def _day_of(self, t: datetime) -> dict[str, int]:
        """The sends per channel of the day (in settings.timezone) holding `t`."""
        if not self._day_from <= t < self._day_to:
            d = t.astimezone(self.tz).date()
            self._day_counts = self.per_day[d]
            start = datetime(d.year, d.month, d.day, tzinfo=self.tz)
            nxt = d + timedelta(days=1)
            self._day_from = wall_to_utc(start.replace(tzinfo=None), self.tz)
            self._day_to = wall_to_utc(datetime(nxt.year, nxt.month, nxt.day), self.tz)
            if not self._day_from <= t < self._day_to or (
                self._day_from.astimezone(self.tz).utcoffset()
                != (self._day_to - _TICK).astimezone(self.tz).utcoffset()
            ):  # a clock change that day: that day's instants are read one by one
                self._day_from = self._day_to = t
        return self._day_counts

    def _ab_state(self, campaign: str, step: int, t: datetime) -> AbState | None:
        """The A/B test of a step with an `ab` table at `t` (None for another step). A decision
        due and not made yet is assumed to go to the fallback: which variant wins does not
        change when or how many messages go."""
        st = self.camps[campaign].steps[step]
        if st.ab is None:
            return None
        key = (campaign, st.name)
        state = self.ab.get(key, AbState())
        if state.winner is None and state.decide_at is not None and state.decide_at <= t:
            state = self.ab[key] = AbState(winner=st.ab.fallback)
        return state

    def left(self) -> dict[str, dict[str, int]]:
        """Messages still to send per campaign and channel, later steps included."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        runs = [r for _d, _q, r in self.due]
        runs += [r for g in self.ready.values() for q in g.values() for r in q]
        for r in runs:
            for st in self.camps[r.campaign].steps[r.step :]:
                out[r.campaign][st.channel] += len(r.leads) - r.pos
        return out


def plan(
    cfg: Config,
    store: Store,
    now: datetime,
    *,
    days: int = 30,
    campaigns: list[str] | None = None,
    rng: random.Random | None = None,
    horizon_days: int = HORIZON_DAYS,
) -> Plan:
    """Forecast sending from `now` send by send, and show `days` days of it, day 1 being today
    in settings.timezone.

    The simulation runs until nothing is left, or to the end of day `max(days, horizon_days)`:
    `days` changes what is shown, never a finish. A campaign still sending at the horizon gets
    an estimated finish: what it has left on each channel (behind campaigns of higher
    priority) at the pace that channel kept over the last simulated week.
    """
    for name in campaigns or ():
        cfg.campaign(name)
    tz = ZoneInfo(cfg.settings.timezone)
    first_day = now.astimezone(tz).date()
    simulated = max(days, horizon_days)
    end_day = first_day + timedelta(days=simulated)
    horizon = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz)
    sim = _Simulation(cfg, now, horizon, rng or random.Random(0))
    active = {
        n: c
        for n, c in cfg.campaigns.items()
        if c.status == "active" and c.steps and (campaigns is None or n in campaigns)
    }
    sim.camps = active
    # channels claim in the engine's order (a lead's frequency-cap slot goes to the first)
    sim.ready = {ch: sim.ready[ch] for ch in by_priority(cfg.channels, active)}
    sim.plans = {n: CampaignPlan(n) for n in active}
    default_tz = cfg.settings.timezone
    sim.start_at = {n: campaign_start(c, default_tz) for n, c in active.items()}
    with store.reads() as conn:
        sim.leads = leads = _Leads(
            default_tz,
            zones=any(not sim.hours[st.channel].always for c in active.values() for st in c.steps),
        )
        for lead_id, ch in store_leads.all_optouts(conn):
            leads.optouts.setdefault(lead_id, set()).add(ch)
        blasts_done = meta.blasts_enrolled(conn)
        need_audience = [n for n, c in active.items() if enrols_by_audience(c, n in blasts_done)]
        # plain tuples, streamed (100,000 rows through SQLAlchemy's row machinery cost a
        # second); the suppression list is matched a chunk of leads at a time
        leads.load(store_leads.plan_leads(conn), partial(_listed, conn, leads))
        since = now - timedelta(days=1, seconds=1)
        sim.history = {ch: store_messages.send_history(conn, ch, since) for ch in cfg.channels}
        for ch, lim in sim.limits.items():
            if lim.warmup is not None:
                first = meta.warmup_start(conn, ch) or store_messages.first_send(conn, ch)
                sim.limits[ch] = lim.started(first)
        if sim.cap is not None:
            sim.lead_sends.update(
                store_messages.all_lead_sends(conn, list(cfg.channels), now - sim.cap.span)
            )
        stopped = store_leads.ended_enrolments(conn)
        sim.ab = ab_states(conn, ab_steps(active))
        index = {n: {st.name: i for i, st in enumerate(c.steps)} for n, c in active.items()}
        # due_at as stored (naive UTC text), parsed by fromisoformat: far cheaper on 100k rows;
        # rows streamed from the cursor, never all held at once
        # Rows of one campaign step due at one instant come one after the other (a pass
        # enrols and schedules them together): pushed as one batch, in the order read.
        batch: list[int] = []
        last: tuple[str, str, str] | None = None
        step_index: int | None = None
        due = now
        for camp_name, step_name, lead_id, due_text in store_messages.plan_pending(
            conn, list(active)
        ):
            if (camp_name, step_name, due_text) != last:
                _push(sim, batch, last, step_index, due, now)
                last = (camp_name, step_name, due_text)
                step_index = index[camp_name].get(step_name)
                due = datetime.fromisoformat(due_text).replace(tzinfo=UTC)
            if step_index is None or (camp_name, lead_id) in stopped or lead_id not in leads:
                continue
            batch.append(lead_id)
        _push(sim, batch, last, step_index, due, now)
        # Enrol as the next pass would. Only leads the next pass could enrol need their fields
        # and an audience check.
        for name in need_audience:
            _enrol(sim, name, active[name], now, partial(store_leads.plan_newcomers, conn, name))
    sim.run()
    out = Plan(
        start=now,
        days=days,
        timezone=cfg.settings.timezone,
        channels=list(cfg.channels),
        per_day={
            first_day + timedelta(days=i): dict(sim.per_day[first_day + timedelta(days=i)])
            for i in range(days)
        },
        campaigns=sim.plans,
        horizon=horizon,
        daily_limits={n: lim.daily for n, lim in sim.limits.items()},
        day_limits=_ramps(sim, first_day, days, tz),
    )
    _finish_dates(out, sim, active, simulated)
    return out


def enrols_by_audience(camp: Campaign, blast_enrolled: bool) -> bool:
    """Whether the next pass may enrol leads in `camp` by its audience: a blast enrols once,
    a trigger campaign on `campaignctl trigger` events and an `enrol_on` sequence on lead
    events yet to happen (neither enrols anyone new in a forecast)."""
    return (
        not (camp.kind == "blast" and blast_enrolled)
        and camp.kind != "trigger"
        and not (camp.enrol_on)
    )


def _push(
    sim: _Simulation,
    batch: list[int],
    key: tuple[str, str, str] | None,
    step: int | None,
    due: datetime,
    now: datetime,
) -> None:
    """Push the pending messages of `batch` (leads), of one campaign step due at `due`, in
    order, and empty it."""
    if not batch or key is None or step is None:
        batch.clear()
        return
    campaign = key[0]
    if due > now:
        sim.plans[campaign].waits["delay"] += len(batch)
    if isinstance(sim, _BATCHED):
        sim.push_all(max(due, now), campaign, step, batch)
    else:
        for lead_id in batch:
            sim.push(max(due, now), campaign, step, lead_id)
    batch.clear()


#: The simulation that takes newcomers in one batch (the tests swap `_Simulation` for the
#: event-by-event reference, which takes them lead by lead).
_BATCHED = _Simulation


def _enrol(
    sim: _Simulation,
    name: str,
    camp: Campaign,
    now: datetime,
    newcomers: Callable[[frozenset[str] | None], Iterable[Any]],
) -> None:
    """Enrol the newcomers of campaign `name` the audience matches, as the next pass would.
    `newcomers(columns)` reads them (`store.leads.plan_newcomers`), those of their columns
    only (None: all)."""
    start = sim.start_at[name]
    at = now if camp.kind == "sequence" or start is None else max(now, start)
    matches = AudienceMatcher(camp.audience, f"campaigns.{name}.audience")
    first_channel = camp.steps[0].channel
    # attributes and tags are JSON to decode: skip it when the expression does not read them
    fixed = {"id", *FIXED_FIELDS}
    needs_attrs = matches.fields is None or not matches.fields <= fixed
    needs_tags = matches.fields is None or "tags" in matches.fields
    # An expression reading only columns many leads share (`status == 'new'`) has one answer
    # per distinct set of their values as stored: remembered here, before any lead's context
    # is built (the matcher remembers it too, but per context).
    shared = matches.fields is not None and matches.fields <= _SHARED_COLUMNS.keys()
    columns = [_SHARED_COLUMNS[f] for f in sorted(matches.fields or ())] if shared else []
    # only the columns the expression reads are read (None: it reads the whole lead)
    read = None
    if matches.fields is not None:
        read = frozenset(matches.fields) | ({"tags"} if needs_tags else set())
        read |= {"attrs"} if needs_attrs else set()
    known: dict[tuple[Any, ...], bool] = {}
    # the simulation takes them all at once (one run per zone); the reference, lead by lead
    batch: array[int] | None = array("q") if isinstance(sim, _BATCHED) else None
    stops = {first_channel, "*"}
    optouts = sim.leads.optouts
    for row in newcomers(read):
        lead_id, email, phone = row[0], row[1], row[2]
        if email is None and phone is None:  # erased (`leads delete`): never enrolled
            continue
        if lead_id in optouts and optouts[lead_id] & stops:
            continue
        key = tuple([row[c] for c in columns]) if shared else None
        answer = known.get(key) if key is not None else None
        if answer is None:
            answer = matches(row_context(row, tags=needs_tags, attrs=needs_attrs))
            if key is not None and len(known) < _SHARED_MEMO:
                known[key] = answer
        if answer and batch is not None:
            batch.append(lead_id)
        elif answer:
            sim.schedule(name, 0, sim.leads[lead_id], at)
    if batch:
        sim.schedule_all(name, 0, batch, at)


#: The columns of a newcomer's row (`store.leads.plan_newcomers`) whose values many leads share.
_SHARED_COLUMNS = {"timezone": 5, "status": 6, "tags": 7}
_SHARED_MEMO = 10_000


def _listed(conn: Any, leads: _Leads, chunk: list[tuple[int, str | None, str | None]]) -> None:
    """Note which of the `chunk` of leads have an address on the suppression list, and empty
    the chunk."""
    if chunk:
        found = suppressed_addresses(conn, chunk, everything=True)
        for lead_id, email, phone in chunk if found else ():
            if lead_id in found:
                leads.listed[lead_id] = (email, phone, found[lead_id])
        chunk.clear()


def _ramps(
    sim: _Simulation, first_day: date, days: int, tz: ZoneInfo
) -> dict[date, dict[str, int | None]]:
    """Each warming-up channel's daily limit per day shown: the one in effect at the end of the
    day (the simulation filled in the first send, when it happens in it)."""
    out: dict[date, dict[str, int | None]] = {}
    for i in range(days):
        d = first_day + timedelta(days=i + 1)
        end = datetime(d.year, d.month, d.day, tzinfo=tz) - timedelta(microseconds=1)
        out[first_day + timedelta(days=i)] = {
            ch: lim.daily_at(end) for ch, lim in sim.limits.items() if lim.warmup is not None
        }
    return out


def _finish_dates(out: Plan, sim: _Simulation, active: dict[str, Campaign], simulated: int) -> None:
    left = sim.left()
    out.horizon_hit = any(left.values())
    span = min(RATE_WINDOW_DAYS, simulated)
    first = out.start.astimezone(ZoneInfo(out.timezone)).date()
    recent = [sim.per_day.get(first + timedelta(days=simulated - 1 - i)) for i in range(span)]
    rate = {
        ch: sum(day[ch] for day in recent if day) / span or float(sim.limits[ch].daily or 0)
        for ch in out.channels
    }
    first_day = out.start.astimezone(ZoneInfo(out.timezone)).date()
    for name, p in sim.plans.items():
        p.remaining = sum(left[name].values())
        if not p.remaining:
            if p.finish is not None:
                p.finish_day = out.day_number(p.finish.astimezone(ZoneInfo(out.timezone)).date())
            continue
        extra = 0
        for ch in left[name]:
            ahead = sum(
                left[other].get(ch, 0)
                for other in left
                if active[other].priority <= active[name].priority
            )
            if not rate[ch]:
                p.finish = None  # nothing moves on this channel: no honest estimate
                break
            extra = max(extra, math.ceil(ahead / rate[ch]))
        else:
            p.finish_day = simulated + extra
            d = first_day + timedelta(days=p.finish_day - 1)
            p.finish = datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(out.timezone))
            p.estimated = True
            continue
        p.finish_day = None

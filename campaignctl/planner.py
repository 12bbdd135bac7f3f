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
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from campaignctl.audience import FIXED_FIELDS, lead_context
from campaignctl.config import Campaign, Config
from campaignctl.engine import (
    AudienceMatcher,
    campaign_start,
)
from campaignctl.engine.decide import ACTIVE, ALWAYS_OPEN, Send, Skip, decide
from campaignctl.pacing import (
    Hours,
    Limits,
    capacity,
    draw_jitter,
    due_after,
    is_open,
    lead_zone,
    next_open,
    next_slot,
    priority_key,
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

    def last_simulated_day(self) -> date:
        return self.horizon.astimezone(ZoneInfo(self.timezone)).date() - timedelta(days=1)

    def headroom(self) -> dict[date, dict[str, Headroom]]:
        """Per day shown and channel: the daily limit, the sends planned, the spare."""
        return {
            d: {ch: Headroom(self.daily_limits.get(ch), counts.get(ch, 0)) for ch in self.channels}
            for d, counts in self.per_day.items()
        }

    def day_number(self, d: date) -> int:
        return (d - self.start.astimezone(ZoneInfo(self.timezone)).date()).days + 1


@dataclass
class _Lead:
    id: int
    email: str | None
    phone: str | None
    timezone: str | None
    default_tz: str
    optouts: set[str]
    suppressed: dict[str, set[str]]  # address -> channels on the suppression list
    _tz: ZoneInfo | None = None

    @property
    def tz(self) -> ZoneInfo:
        if self._tz is None:
            self._tz = lead_zone(self.timezone, self.phone, self.default_tz)
        return self._tz


class _Simulation:
    """The engine's decisions replayed in memory, event by event.

    Ready messages wait per channel in one heap per time zone, so a window that closes for a
    zone parks that zone's heap as a whole instead of touching each message.
    """

    def __init__(self, cfg: Config, now: datetime, horizon: datetime, rng: random.Random):
        self.cfg = cfg
        self.now = now
        self.horizon = horizon
        self.rng = rng
        self.limits = {n: Limits.of(c) for n, c in cfg.channels.items()}
        self.hours = {n: Hours(c.window, c.days) for n, c in cfg.channels.items()}
        self.kinds = {n: cfg.channel_kind(n) for n in cfg.channels}
        self.history: dict[str, list[datetime]] = {n: [] for n in cfg.channels}
        self.jitter: dict[str, timedelta] = {n: timedelta(0) for n in cfg.channels}
        self.due: list[tuple[datetime, int, str, int, int]] = []  # due, seq, campaign, step, lead
        self.ready: dict[str, dict[str, list[tuple[tuple[int, datetime, int], str, int, int]]]] = {
            n: {} for n in cfg.channels
        }
        self.zones: dict[str, ZoneInfo] = {}
        self.seq = 0
        self.tz = ZoneInfo(cfg.settings.timezone)
        self.per_day: dict[date, dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(cfg.channels, 0)
        )
        self.plans: dict[str, CampaignPlan] = {}
        self.camps: dict[str, Campaign] = {}
        self.leads: dict[int, _Lead] = {}
        self.start_at: dict[str, datetime | None] = {}

    def push(self, due: datetime, campaign: str, step: int, lead: int) -> None:
        self.seq += 1
        heapq.heappush(self.due, (due, self.seq, campaign, step, lead))

    def schedule(self, campaign: str, step: int, lead: _Lead, base: datetime) -> None:
        """The next step after `base` (enrolment or a send), as the engine's `_advance` does."""
        camp = self.camps[campaign]
        if step >= len(camp.steps):
            return
        st = camp.steps[step]
        hours = self.hours[st.channel]
        start = self.start_at[campaign]
        raw = base + st.delay if start is None else max(base + st.delay, start)
        due = raw if hours.always else due_after(base, st.delay, hours, lead.tz, start)
        plan = self.plans[campaign]
        if raw > base:
            plan.waits["delay"] += 1
        if due > raw:
            plan.waits["window"] += 1
        self.push(due, campaign, step, lead.id)

    def run(self) -> None:
        t = self.now
        while True:
            self._release(t)
            for ch in self.ready:
                self._send_at(ch, t)
            if self.due and self.due[0][0] <= t:
                continue  # a zero-delay next step became due at this very instant
            nxt = self._next_event(t)
            if nxt is None or nxt >= self.horizon:
                return
            t = nxt

    def _zone_key(self, ch: str, lead: _Lead) -> str:
        if self.hours[ch].always:
            return ""
        z = lead.tz
        self.zones.setdefault(z.key, z)
        return z.key

    def _open(self, ch: str, key: str, t: datetime) -> bool:
        return key == "" or is_open(t, self.hours[ch], self.zones[key])

    def _release(self, t: datetime) -> None:
        while self.due and self.due[0][0] <= t:
            due, seq, campaign, step, lead = heapq.heappop(self.due)
            ch = self.camps[campaign].steps[step].channel
            key = priority_key(self.camps[campaign].priority, due, seq)
            group = self.ready[ch].setdefault(self._zone_key(ch, self.leads[lead]), [])
            heapq.heappush(group, (key, campaign, step, lead))

    def _next_event(self, t: datetime) -> datetime | None:
        nxt = self.due[0][0] if self.due else None
        for ch, groups in self.ready.items():
            waiting_for_limit = False
            for zkey, queue in groups.items():
                if not queue:
                    continue
                if self._open(ch, zkey, t):
                    waiting_for_limit = True
                else:
                    opens = next_open(t, self.hours[ch], self.zones[zkey])
                    nxt = opens if nxt is None else min(nxt, opens)
            if waiting_for_limit:
                slot = next_slot(self.limits[ch], self.history[ch], t, self.jitter[ch])
                slot = max(slot, t + timedelta(microseconds=1))
                nxt = slot if nxt is None else min(nxt, slot)
        return nxt

    def _send_at(self, ch: str, t: datetime) -> None:
        lim = self.limits[ch]
        hist = self.history[ch]
        groups = self.ready[ch]
        kind = self.kinds[ch]
        open_keys = [k for k, q in groups.items() if q and self._open(ch, k, t)]
        while open_keys:
            if capacity(lim, hist, t) <= 0:
                return
            if hist and lim.paced and next_slot(lim, hist, t, self.jitter[ch]) > t:
                return
            best = min(open_keys, key=lambda k: groups[k][0][0])
            key, campaign, step, lead_id = heapq.heappop(groups[best])
            if not groups[best]:
                open_keys.remove(best)
            lead = self.leads[lead_id]
            camp = self.camps[campaign]
            plan = self.plans[campaign]
            # the engine's own rule; the window is open (closed zones are parked), the
            # enrolment active (stopped ones are left out when pending messages are loaded)
            decision = decide(
                campaign,
                camp,
                camp.steps[step].name,
                ch,
                kind,
                lead,
                lead.optouts,
                ACTIVE,
                ALWAYS_OPEN,
                t,
                lead.suppressed,
            )
            if not isinstance(decision, Send):
                if isinstance(decision, Skip):
                    k = (camp.steps[step].name, decision.why.value, decision.reason)
                    plan.skipped[k] = plan.skipped.get(k, 0) + 1
                    if decision.next_step_follows(camp):
                        self.schedule(campaign, step + 1, lead, t)
                continue
            if t - key[1] > LIMIT_WAIT:
                plan.waits["limit"] += 1
            hist.append(t)
            if lim.jitter:
                self.jitter[ch] = draw_jitter(lim, self.rng)
            self.per_day[t.astimezone(self.tz).date()][ch] += 1
            plan.sends += 1
            plan.finish = t
            self.schedule(campaign, step + 1, lead, t)
            if lim.paced:
                return

    def left(self) -> dict[str, dict[str, int]]:
        """Messages still to send per campaign and channel, later steps included."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        items = [(c, s) for _d, _q, c, s, _l in self.due]
        items += [(c, s) for g in self.ready.values() for q in g.values() for _k, c, s, _l in q]
        for campaign, step in items:
            for st in self.camps[campaign].steps[step:]:
                out[campaign][st.channel] += 1
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
    sim.plans = {n: CampaignPlan(n) for n in active}
    default_tz = cfg.settings.timezone
    sim.start_at = {n: campaign_start(c, default_tz) for n, c in active.items()}
    with store.read() as s:
        conn = s.connection()
        optouts: dict[int, set[str]] = defaultdict(set)
        for lead_id, ch in store_leads.all_optouts(conn):
            optouts[lead_id].add(ch)
        blasts_done = meta.blasts_enrolled(conn)
        # a trigger campaign enrols on `campaignctl trigger` events and an `enrol_on` sequence
        # on lead events yet to happen: neither enrols anyone new in the forecast
        need_audience = [
            n
            for n, c in active.items()
            if not (c.kind == "blast" and n in blasts_done)
            and c.kind != "trigger"
            and not c.enrol_on
        ]
        # plain tuples: 100,000 rows through SQLAlchemy's row machinery cost a second
        no_optouts: set[str] = set()
        rows = store_leads.plan_leads(conn)
        suppressed = suppressed_addresses(conn, (r[:3] for r in rows), everything=True)
        for lead_id, email, phone, timezone in rows:
            sim.leads[lead_id] = _Lead(
                lead_id,
                email,
                phone,
                timezone,
                default_tz,
                optouts.get(lead_id, no_optouts),
                suppressed.get(lead_id, {}),
            )
        # Only leads the next pass could enrol need their fields and an audience check.
        newcomers: dict[str, list[Any]] = {
            name: store_leads.plan_newcomers(conn, name) for name in need_audience
        }
        since = now - timedelta(days=1, seconds=1)
        sim.history = {ch: store_messages.send_history(conn, ch, since) for ch in cfg.channels}
        # due_at as stored (naive UTC text), parsed by fromisoformat: far cheaper on 100k rows
        pending = store_messages.plan_pending(conn, list(active))
        stopped = store_leads.ended_enrolments(conn)
    index = {n: {st.name: i for i, st in enumerate(c.steps)} for n, c in active.items()}
    for camp_name, step_name, lead_id, due_text in pending:
        step_index = index[camp_name].get(step_name)
        if step_index is None or (camp_name, lead_id) in stopped or lead_id not in sim.leads:
            continue
        due = datetime.fromisoformat(due_text).replace(tzinfo=UTC)
        if due > now:
            sim.plans[camp_name].waits["delay"] += 1
        sim.push(max(due, now), camp_name, step_index, lead_id)
    # Enrol as the next pass would.
    for name in need_audience:
        camp = active[name]
        start = sim.start_at[name]
        at = now if camp.kind == "sequence" or start is None else max(now, start)
        matches = AudienceMatcher(camp.audience, f"campaigns.{name}.audience")
        first_channel = camp.steps[0].channel
        # attributes are JSON to decode: skip it when the expression reads only fixed fields
        fixed = {"id", *FIXED_FIELDS}
        needs_attrs = matches.fields is None or not matches.fields <= fixed
        for lead_id, email, phone, first, last, timezone, status, tags, attrs in newcomers[name]:
            if sim.leads[lead_id].optouts & {first_channel, "*"}:
                continue
            if email is None and phone is None:  # erased (`leads delete`): never enrolled
                continue
            ctx = lead_context(
                id=lead_id,
                email=email,
                phone=phone,
                first_name=first,
                last_name=last,
                timezone=timezone,
                status=status,
                tags=json.loads(tags) if tags else [],
                attrs=json.loads(attrs) if attrs and needs_attrs else {},
            )
            if matches(ctx):
                sim.schedule(name, 0, sim.leads[lead_id], at)
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
    )
    _finish_dates(out, sim, active, simulated)
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

"""`plan`: the coming days simulated with the engine's own pacing rules, in memory.

The simulation starts from what the database holds now (enrolments, pending messages, the last
24 hours of sends that limits count) and enrols the leads the next pass would enrol. It then
sends each message at the first instant the engine's rules allow: `pacing.next_slot` and
`capacity` for limits, `pacing.next_open` for windows, `pacing.due_after` for delays,
`pacing.priority_key` for who goes first. It assumes sending runs continuously (a daemon, or
`send` from a frequent cron) and that no new leads arrive. Nothing is written.
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from campaignctl.audience import compile_audience, lead_context
from campaignctl.config import Campaign, Config
from campaignctl.engine import ENROLMENT, LEAD, MESSAGE, META, OPTOUT
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
from campaignctl.store import PENDING, SENDING, SENT, UNCERTAIN, Store

#: How far `plan` looks for finish dates, whatever `--days` shows.
FINISH_HORIZON_DAYS = 400


@dataclass
class CampaignPlan:
    """One campaign's forecast."""

    name: str
    sends: int = 0
    remaining: int = 0  # messages still to send at the end of the simulation
    finish: datetime | None = None  # the last send, when everything is sent within the horizon
    finish_day: int | None = None  # 1 is today
    waits: dict[str, int] = field(default_factory=lambda: {"limit": 0, "window": 0, "delay": 0})


@dataclass
class Plan:
    """Sends per day per channel, and when each campaign finishes."""

    start: datetime
    days: int
    timezone: str
    channels: list[str]
    per_day: dict[date, dict[str, int]]
    campaigns: dict[str, CampaignPlan]

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
    _tz: ZoneInfo | None = None

    @property
    def tz(self) -> ZoneInfo:
        if self._tz is None:
            self._tz = lead_zone(self.timezone, self.phone, self.default_tz)
        return self._tz


class _Simulation:
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
        self.ready: dict[str, list[tuple[tuple[int, datetime, int], str, int, int]]] = defaultdict(
            list
        )
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
            for ch, queue in self.ready.items():
                if queue:
                    self._send_at(ch, queue, t)
            if self.due and self.due[0][0] <= t:
                continue  # a zero-delay next step became due at this very instant
            nxt = self.due[0][0] if self.due else None
            for ch, queue in self.ready.items():
                if queue:
                    slot = next_slot(self.limits[ch], self.history[ch], t, self.jitter[ch])
                    slot = max(slot, t + timedelta(microseconds=1))
                    nxt = slot if nxt is None else min(nxt, slot)
            if nxt is None or nxt >= self.horizon:
                return
            t = nxt

    def _release(self, t: datetime) -> None:
        while self.due and self.due[0][0] <= t:
            due, seq, campaign, step, lead = heapq.heappop(self.due)
            ch = self.camps[campaign].steps[step].channel
            key = priority_key(self.camps[campaign].priority, due, seq)
            heapq.heappush(self.ready[ch], (key, campaign, step, lead))

    def _send_at(self, ch: str, queue: list[Any], t: datetime) -> None:
        lim = self.limits[ch]
        hist = self.history[ch]
        hours = self.hours[ch]
        while queue:
            if capacity(lim, hist, t) <= 0:
                return
            if hist and lim.paced and next_slot(lim, hist, t, self.jitter[ch]) > t:
                return
            key, campaign, step, lead_id = heapq.heappop(queue)
            lead = self.leads[lead_id]
            camp = self.camps[campaign]
            plan = self.plans[campaign]
            if lead.optouts & {ch, "*"}:
                if "optout" not in camp.stop_on:
                    self.schedule(campaign, step + 1, lead, t)
                continue
            if not hours.always and not is_open(t, hours, lead.tz):
                plan.waits["window"] += 1
                self.push(next_open(t, hours, lead.tz), campaign, step, lead_id)
                continue
            if not (lead.email if self.kinds[ch] == "email" else lead.phone):
                self.schedule(campaign, step + 1, lead, t)
                continue
            if key[1] < t:
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


def plan(
    cfg: Config,
    store: Store,
    now: datetime,
    *,
    days: int = 30,
    campaigns: list[str] | None = None,
    rng: random.Random | None = None,
) -> Plan:
    """Forecast `days` days of sending from `now` (finish dates look up to 400 days ahead)."""
    for name in campaigns or ():
        cfg.campaign(name)
    horizon_days = max(days, FINISH_HORIZON_DAYS)
    sim = _Simulation(cfg, now, now + timedelta(days=horizon_days), rng or random.Random(0))
    active = {
        n: c
        for n, c in cfg.campaigns.items()
        if c.status == "active" and c.steps and (campaigns is None or n in campaigns)
    }
    sim.camps = active
    sim.plans = {n: CampaignPlan(n) for n in active}
    default_tz = cfg.settings.timezone
    for n, c in active.items():
        start = c.start_at
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=ZoneInfo(default_tz))
        sim.start_at[n] = start
    with store.read() as s:
        conn = s.connection()
        optouts: dict[int, set[str]] = defaultdict(set)
        for lead_id, ch in conn.execute(select(OPTOUT.c.lead_id, OPTOUT.c.channel)):
            optouts[lead_id].add(ch)
        enrolled: dict[str, set[int]] = defaultdict(set)
        for camp, lead_id in conn.execute(select(ENROLMENT.c.campaign, ENROLMENT.c.lead_id)):
            enrolled[camp].add(lead_id)
        blasts_done = {
            k.removeprefix("blast.").removesuffix(".enrolled")
            for (k,) in conn.execute(select(META.c.key).where(META.c.key.like("blast.%.enrolled")))
        }
        need_audience = [
            n for n, c in active.items() if not (c.kind == "blast" and n in blasts_done)
        ]
        cols = [LEAD.c.id, LEAD.c.email, LEAD.c.phone, LEAD.c.timezone]
        if need_audience:
            cols += [LEAD.c.first_name, LEAD.c.last_name, LEAD.c.status, LEAD.c.tags, LEAD.c.attrs]
        rows = list(conn.execute(select(*cols)))
        for r in rows:
            sim.leads[r.id] = _Lead(
                r.id, r.email, r.phone, r.timezone, default_tz, optouts.get(r.id, set())
            )
        since = now - timedelta(days=1, seconds=1)
        for ch, at in conn.execute(
            select(MESSAGE.c.channel, MESSAGE.c.sent_at).where(
                MESSAGE.c.state == SENT, MESSAGE.c.sent_at > since
            )
        ):
            if ch in sim.history:
                sim.history[ch].append(at)
        for ch, at in conn.execute(
            select(MESSAGE.c.channel, MESSAGE.c.claimed_at).where(
                MESSAGE.c.state.in_([SENDING, UNCERTAIN]), MESSAGE.c.claimed_at > since
            )
        ):
            if ch in sim.history:
                sim.history[ch].append(at)
        pending = list(
            conn.execute(
                select(
                    MESSAGE.c.campaign, MESSAGE.c.step, MESSAGE.c.lead_id, MESSAGE.c.due_at
                ).where(MESSAGE.c.state == PENDING, MESSAGE.c.campaign.in_(list(active)))
            )
        )
        stopped = {
            (c, lid)
            for c, lid in conn.execute(
                select(ENROLMENT.c.campaign, ENROLMENT.c.lead_id).where(
                    ENROLMENT.c.state != "active"
                )
            )
        }
    for h in sim.history.values():
        h.sort()
    for camp_name, step_name, lead_id, due in pending:
        names = [st.name for st in active[camp_name].steps]
        if step_name not in names or (camp_name, lead_id) in stopped or lead_id not in sim.leads:
            continue
        if due > now:
            sim.plans[camp_name].waits["delay"] += 1
        sim.push(max(due, now), camp_name, names.index(step_name), lead_id)
    # Enrol as the next pass would.
    by_id = {r.id: r for r in rows} if need_audience else {}
    for name in need_audience:
        camp = active[name]
        start = sim.start_at[name]
        at = now if camp.kind == "sequence" or start is None else max(now, start)
        matches = compile_audience(camp.audience, f"campaigns.{name}.audience")
        first = camp.steps[0].channel
        for lead_id, r in by_id.items():
            if lead_id in enrolled[name] or sim.leads[lead_id].optouts & {first, "*"}:
                continue
            ctx = lead_context(
                id=r.id,
                email=r.email,
                phone=r.phone,
                first_name=r.first_name,
                last_name=r.last_name,
                timezone=r.timezone,
                status=r.status,
                tags=r.tags or [],
                attrs=r.attrs or {},
            )
            if matches(ctx):
                sim.schedule(name, 0, sim.leads[lead_id], at)
    sim.run()
    # What is left: every queued message and the steps after it.
    for _due, _seq, campaign, step, _lead in sim.due:
        sim.plans[campaign].remaining += len(active[campaign].steps) - step
    for queue in sim.ready.values():
        for _key, campaign, step, _lead in queue:
            sim.plans[campaign].remaining += len(active[campaign].steps) - step
    out = Plan(
        start=now,
        days=days,
        timezone=cfg.settings.timezone,
        channels=list(cfg.channels),
        per_day={},
        campaigns=sim.plans,
    )
    first_day = now.astimezone(sim.tz).date()
    out.per_day = {
        first_day + timedelta(days=i): dict(sim.per_day.get(first_day + timedelta(days=i), {}))
        or dict.fromkeys(cfg.channels, 0)
        for i in range(days)
    }
    for p in sim.plans.values():
        if p.remaining:
            p.finish = None
        elif p.finish is not None:
            p.finish_day = out.day_number(p.finish.astimezone(sim.tz).date())
    return out

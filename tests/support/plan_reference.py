"""The planner's simulation as it stood before issue 15: one heap event per message, every
window and limit asked of `pacing` afresh. Kept as the reference the faster simulation in
`campaignctl/planner.py` must agree with (tests/test_plan_fast.py swaps it in).
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from campaignctl.config import Campaign, Config
from campaignctl.engine.decide import ACTIVE, ALWAYS_OPEN, Send, Skip, decide
from campaignctl.pacing import (
    Hours,
    Limits,
    capacity,
    draw_jitter,
    due_after,
    is_open,
    next_open,
    next_slot,
    priority_key,
)
from campaignctl.planner import LIMIT_WAIT, CampaignPlan, _Lead


class ReferenceSimulation:
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
        # what `plan()` sets on any simulation; the reference models neither a frequency cap nor
        # A/B tests (the projects it is compared on have none)
        self.cap = None
        self.lead_sends: dict[int, list[datetime]] = defaultdict(list)
        self.ab: dict[object, object] = {}

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

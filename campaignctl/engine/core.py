"""The `Engine`: one pass enrols, reconciles, claims, sends and records.

`send` (one run from cron or a terminal) and `daemon` drive the same `Engine.run_pass(now, rng)`;
`campaignctl.runner` wraps it in an APScheduler loop. The database is the only source of truth:
a message is claimed (`sending`, with who and when) in a short BEGIN IMMEDIATE transaction before
its provider is called and recorded right after, so whatever the engine forgets when it crashes,
the next pass finds in the database. See docs/engine.md.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from campaignctl.channels.base import Sent
from campaignctl.engine.claim import Claims
from campaignctl.engine.context import (
    soonest,
)
from campaignctl.engine.enrol import Enrolment
from campaignctl.engine.recovery import (
    Recovery,
)
from campaignctl.engine.result import PassResult
from campaignctl.pacing import capacity
from campaignctl.store import messages as store_messages


class Engine(Recovery, Enrolment, Claims):
    """Sends a campaign file's messages through its channels, recording everything in `store`.

    Each stage is its own class over the shared `EngineContext`: `Recovery`, `Enrolment`,
    `Claims` (which asks `decide` about every due message) and `Outcomes`; this class runs
    them in order, one pass at a time.
    """

    def run_pass(
        self,
        now: datetime,
        rng: random.Random,
        *,
        limit: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        ends: Callable[[], bool] | None = None,
    ) -> PassResult:
        """One pass at instant `now`: archive, recover, reconcile, enrol, then send what may go.

        Sends at most `limit` messages; checks `should_stop` between sends. Every send in the
        pass is stamped `now`: a pass sends only what may go at that instant (one message on a
        paced channel), and its result says when the next pass has work. `ends` is asked after
        each send whether the pass's time is up (the runner's `PASS_TIME`): the batch's other
        claims are released, and what is left goes in the next pass, stamped with its own
        `now`. `on_event` hears what happened to each message as its batch commits (the result
        keeps none of them then); without it, the result's `events` lists them.
        """
        res = PassResult(on_event=on_event)
        self._skip_archived(now, res)
        self._recover(now)
        self._reconcile(now, res)
        res.emit()
        self.decide_ab_tests(now)
        if (
            self._last_enrol is None
            or now - self._last_enrol >= self.enrol_every
            or now < self._last_enrol
        ):
            self.enrol(now, res)
            self._last_enrol = now
        sent = 0
        while limit is None or sent < limit:
            if should_stop is not None and should_stop():
                break
            want = self.batch if limit is None else min(self.batch, limit - sent)
            claimed = self._claim(now, rng, want, res)
            if not claimed:
                break
            outcomes = self._send(claimed, res, should_stop, ends)
            self._record(outcomes, now, rng, res)
            res.emit()
            sent += sum(1 for _, o in outcomes if isinstance(o, Sent))
            if ends is not None and ends():
                break
        res.emit()  # a last claim whose every message failed to render
        self._complete_blasts(now)
        self._look_ahead(now, rng, res)
        return res

    # -------------------------------------------------------------- what comes next

    def _look_ahead(self, now: datetime, rng: random.Random, res: PassResult) -> None:
        """Count what waits, and find when the next pass has work (for `send` and `daemon`)."""
        active = self.active_campaigns()
        if not active:
            return
        names = self.channel_names()
        with self.store.read() as s:
            conn = s.connection()
            due = store_messages.due_counts(conn, now, list(active), names)
            waiting: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
            for camp, step, ch, n in due:
                waiting[ch].append((camp, step, n))
            for ch, rows in waiting.items():
                self.warm_up(conn, ch, now, record=False)
                breaker = self.breaker(conn, ch)
                paused = breaker.paused(now)
                for camp, step, n in rows:
                    res.add(camp, step, ch, "deferred_breaker" if paused else "deferred_limit", n)
                if paused:
                    # not a pacing gap: `send` ends, a daemon wakes for the probe
                    res.paused[ch] = breaker
                    res.next_due = soonest(res.next_due, breaker.until)
                    continue
                hist = self.history(conn, ch, now)
                slot = self._slot(ch, hist, now, rng)
                res.next_due = soonest(res.next_due, slot)
                lim = self.limits[ch]
                only_pace = capacity(lim.limits_only(), hist, now) > 0 or slot <= now
                if only_pace:
                    res.pace_until = soonest(res.pace_until, slot)
            later = store_messages.next_due(conn, now, list(active), names)
            res.next_due = soonest(res.next_due, later)

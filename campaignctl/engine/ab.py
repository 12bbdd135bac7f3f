"""A/B tests: each step's test state for `decide`, its start, and its decision, made once.

A step with an `ab` table starts its test when its first message passes the window and address
checks (usually the test group's first send); the decision is due `wait` later. The first pass
at or after that moment counts the test group's figures in SQL (`store.abtests`), runs
`abtest.pick_winner` and stores the outcome INSERT-or-ignore: a second process, or a second
pass, reads the stored row instead of deciding again. Held leads then get the winner.
"""

from __future__ import annotations

from datetime import datetime

from campaignctl.abtest import Arm, pick_winner
from campaignctl.config import Campaign, Step
from campaignctl.engine.context import EngineContext
from campaignctl.engine.decide import AbState
from campaignctl.store import abtests, journal
from campaignctl.store.conn import Conn, Readable
from campaignctl.store.journal import Kind

AbKey = tuple[str, str]  # (campaign, step)


def ab_steps(active: dict[str, Campaign]) -> dict[AbKey, Step]:
    """The steps with an `ab` table among these campaigns."""
    return {(name, st.name): st for name, camp in active.items() for st in camp.steps if st.ab}


def ab_states(conn: Readable, steps: dict[AbKey, Step]) -> dict[AbKey, AbState]:
    """Each A/B step's state as stored: decided, started (decision due), or not started."""
    if not steps:
        return {}
    campaigns = sorted({c for c, _ in steps})
    started = abtests.started(conn, campaigns)
    decided = abtests.decisions(conn, campaigns)
    out: dict[AbKey, AbState] = {}
    for key, st in steps.items():
        assert st.ab is not None
        if key in decided:
            out[key] = AbState(winner=decided[key].winner)
        elif key in started:
            out[key] = AbState(decide_at=started[key] + st.ab.wait)
        else:
            out[key] = AbState()
    return out


class AbTests(EngineContext):
    """The A/B stage: states read for the claim, tests started there, decisions made per pass."""

    def _ab_start(self, conn: Conn, key: AbKey, step: Step, now: datetime) -> AbState:
        """Start the step's test at `now` (or read when another process started it)."""
        assert step.ab is not None
        at = abtests.start(conn, key[0], key[1], now)
        return AbState(decide_at=at + step.ab.wait)

    def decide_ab_tests(self, now: datetime) -> list[AbKey]:
        """Decide every started test whose wait is over and that has no decision; the steps
        this call decided (a step another process decided first is not among them)."""
        steps = ab_steps(self.active_campaigns())
        if not steps:
            return []
        with self.store.read() as s:
            if not _due(ab_states(s, steps), now):
                return []
        with self.store.write() as s:
            due = _due(ab_states(s, steps), now)  # again, under the write lock
            return [key for key in due if self._ab_decide(s, key, steps[key], now)]

    @staticmethod
    def _ab_decide(conn: Conn, key: AbKey, step: Step, now: datetime) -> bool:
        """Count the test group's figures, pick the winner, store it once; whether we did."""
        ab = step.ab
        assert ab is not None
        campaign, name = key
        figures = abtests.figures(conn, campaign, name, ab.metric, now)
        live = [v.name for v in step.variants if v.status != "draft"]
        arms = [Arm(v, *figures.get(v, (0, 0))) for v in live]
        outcome = pick_winner(arms, ab.confidence, ab.min_per_variant, ab.fallback, ab.metric)
        values = {
            "campaign": campaign,
            "step": name,
            "decided_at": now,
            "winner": outcome.winner,
            "metric": ab.metric,
            "rule": outcome.rule,
            "reason": outcome.reason,
            "z": outcome.z,
            "p_value": outcome.p_value,
            "confidence": ab.confidence,
            "figures": {
                a.name: {"sends": a.sends, "successes": a.successes, "rate": a.rate} for a in arms
            },
        }
        if not abtests.decide_once(conn, values):
            return False
        detail = {
            "winner": outcome.winner,
            "metric": ab.metric,
            "p_value": outcome.p_value,
            "reason": outcome.reason,
        }
        entry = journal.entry(
            Kind.AB_DECIDED,
            now,
            detail,
            campaign=campaign,
            step=name,
            code=outcome.rule,
            source="engine",
        )
        journal.add(conn, [entry])
        return True


def _due(states: dict[AbKey, AbState], now: datetime) -> list[AbKey]:
    """The started, undecided tests whose decision is due at `now`."""
    return [
        key
        for key, st in states.items()
        if st.winner is None and st.decide_at is not None and st.decide_at <= now
    ]

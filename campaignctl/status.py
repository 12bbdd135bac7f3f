"""`status`: per campaign and step, how many messages are in each state, from the database."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from campaignctl.config import Config, Step
from campaignctl.store import MESSAGE_STATES, Store, abtests, events, leads, messages, meta

#: Readable labels for the skip reason codes (`engine.decide.Why`); a message skipped before
#: codes were stored is grouped under its reason text, or `other`.
REASON_LABELS = {
    "window": "outside the window",
    "limit": "channel limit",
    "frequency_cap": "frequency cap",
    "priority": "priority",
    "backoff": "backoff",
    "breaker": "circuit breaker",
    "opted_out": "opted out",
    "enrolment_stopped": "enrolment stopped",
    "campaign_archived": "campaign archived",
    "no_address": "no address",
    "step_removed": "step removed",
    "lead_deleted": "lead deleted",
    "ab_wait": "held for the A/B winner",
    "other": "other",
}
DELIVERY_STATES = ("delivered", "undelivered", "read")


def reason_label(code: str) -> str:
    """A skip reason code as words (an unknown code, or a stored reason text, as it is)."""
    return REASON_LABELS.get(code, code)


#: The most messages `status` forecasts the finish for by itself (pending messages plus leads
#: a pass may enrol): a forecast simulates each one (`plan`), so past this `status` leaves the
#: finish to `plan` or `status --forecast` and stays under a second at 1,000,000 leads.
FORECAST_LIMIT = 200_000


def status(
    cfg: Config,
    store: Store,
    now: datetime,
    campaign: str | None = None,
    *,
    forecast_limit: int | None = FORECAST_LIMIT,
) -> dict[str, Any]:
    """The `status --format json` document: {"campaigns": [{name, status, enrolled, steps...}],
    "channels": [{name, provider, reads_replies, note, last_sync, breaker, needs_person}],
    "daemon": {running, pid, started_at, last_pass_at, last_sync_at, stopped_at},
    "forecast": {done, messages, limit}}: whether the finishes were forecast (`messages` to
    simulate, at most `forecast_limit`; None: no limit); a breaker
    is {paused, probing, until, failed, attempts, last_error, deferred}; `needs_person` is
    {message, hint} while a running daemon has stopped that channel for its credentials;
    `warmup` is {day, days, limit, daily_limit, first_send} for a channel with a warm-up.

    Each step has a count per message state plus `opted_out` (enrolled leads opted out of the
    step's channel), `skipped_by_reason` ({reason code: count}: `REASON_LABELS` says them in
    words) and `delivered`, `undelivered`, `read` (sent messages by their latest delivery
    event, each once: `store.events.DELIVERY_KINDS`); each campaign has `finish` and
    `finish_day` from `plan` (None, and `forecast` false, when there was too much to simulate),
    and `audience_skipped` ({count, reason}): leads its audience could not be evaluated for.

    A step with variants has `variants`: [{name, status, sent, replies, delivered, clicked,
    rate}] (clicked: messages a person clicked in; rate: by its A/B `metric`, else replies per
    send), and `ab` (None without an `ab` table): {metric, test_fraction, started_at,
    decide_at, decision}, the decision being None until made, then {winner, rule, reason,
    p_value, z, confidence, decided_at, figures} as stored (`store.schema.AbDecision`).
    """
    from campaignctl.planner import enrols_by_audience, plan

    if campaign is not None:
        cfg.campaign(campaign)  # a NotFoundError naming the typo
    names = [campaign] if campaign is not None else list(cfg.campaigns)
    with store.reads() as s:
        counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(MESSAGE_STATES, 0)
        )
        for camp, step, state, n in messages.state_counts(s, names):
            counts[(camp, step)][state] = n
        enrolled: dict[str, dict[str, int]] = defaultdict(dict)
        for camp, state, n in leads.enrolment_counts(s, names):
            enrolled[camp][state] = n
        opted: dict[tuple[str, str], int] = {}
        for camp, ch, n in leads.optout_counts(s, names):
            opted[(camp, ch)] = n
        reasons: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for camp, step, reason, n in messages.skip_reason_counts(s, names):
            reasons[(camp, step)][reason] = n
        delivery: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(DELIVERY_STATES, 0)
        )
        for camp, step, state, n in events.delivery_counts(s, names):
            delivery[(camp, step)][state] = n
        ab_started = abtests.started(s, names)
        ab_decided = abtests.decisions(s, names)
        audience_skipped = {k: json.loads(v) for k, v in meta.audience_skipped(s).items()}
        completed = meta.completed_campaigns(s)
        sending = [n for n in names if _sends(cfg, n)]
        # what a forecast would simulate: the pending messages, and every lead not yet enrolled
        # where the next pass may enrol (an upper bound: the audience is not evaluated here)
        work = sum(
            counts[(n, st.name)]["pending"] for n in sending for st in cfg.campaigns[n].steps
        )
        blasts_done = meta.blasts_enrolled(s)
        newcomers = [n for n in sending if enrols_by_audience(cfg.campaigns[n], n in blasts_done)]
        if newcomers:
            total = leads.count(s)
            work += sum(max(0, total - sum(enrolled[n].values())) for n in newcomers)
    per_variant: dict[tuple[str, str], dict[str, tuple[int, int, int, int]]] = defaultdict(dict)
    if any(st.variants for n in names for st in cfg.campaigns[n].steps):
        # counted by the A/B test's own SQL (store.abtests), which needs the engine's connection
        with store.reading() as conn:
            for camp, step, variant, *figures in abtests.variant_counts(conn, names):
                per_variant[(camp, step)][variant] = tuple(figures)
    within = forecast_limit is None or work <= forecast_limit
    forecast = plan(cfg, store, now, campaigns=sending) if within else None
    tz = ZoneInfo(cfg.settings.timezone)
    out = []
    for name in names:
        camp = cfg.campaigns[name]
        steps = []
        for st in camp.steps:
            c = counts[(name, st.name)]
            steps.append(
                {
                    "name": st.name,
                    "channel": st.channel,
                    **c,
                    "opted_out": opted.get((name, st.channel), 0) + opted.get((name, "*"), 0),
                    "skipped_by_reason": reasons.get((name, st.name), {}),
                    **delivery[(name, st.name)],
                    "variants": _variants(st, per_variant[(name, st.name)]),
                    "ab": _ab(st, ab_started.get((name, st.name)), ab_decided.get((name, st.name))),
                }
            )
        fc = forecast.campaigns.get(name) if forecast else None
        out.append(
            {
                "name": name,
                "kind": camp.kind,
                "status": "completed" if name in completed else camp.status,
                "enrolled": sum(enrolled[name].values()),
                "active": enrolled[name].get("active", 0),
                "completed": enrolled[name].get("completed", 0),
                "stopped": enrolled[name].get("stopped", 0),
                "steps": steps,
                "finish": fc.finish.astimezone(tz).isoformat() if fc and fc.finish else None,
                "finish_day": fc.finish_day if fc else None,
                "finish_estimated": fc.estimated if fc else False,
                "remaining": fc.remaining if fc else 0,
                "forecast": forecast is not None or name not in sending,
                "audience_skipped": audience_skipped.get(name, {"count": 0, "reason": None}),
            }
        )
    from campaignctl.daemon import daemon_status, needs_person
    from campaignctl.sync import last_syncs, reads_replies

    synced = last_syncs(store)
    breakers = _breakers(cfg, store, now, tz)
    warmups = _warmups(cfg, store, now, tz)
    daemon = daemon_status(store)
    stuck = needs_person(store)  # what the daemon, or the last `send`, found
    channels = [
        {
            "name": ch,
            "provider": cfg.channels[ch].provider,
            "reads_replies": reads_replies(cfg, ch) is None,
            "note": reads_replies(cfg, ch),
            "last_sync": synced.get(ch),
            "breaker": breakers[ch],
            "needs_person": stuck.get(ch),
            "warmup": warmups.get(ch),
        }
        for ch in cfg.channels
    ]
    return {
        "campaigns": out,
        "channels": channels,
        "daemon": daemon,
        "hooks": _hooks(cfg, store),
        "forecast": {"done": forecast is not None, "messages": work, "limit": forecast_limit},
    }


def _hooks(cfg: Config, store: Store) -> list[dict[str, Any]]:
    """Each `[[hooks]]` URL's queue: what waits, since when, and the latest error."""
    if not cfg.hooks:
        return []
    from campaignctl.store import hooks as store_hooks

    with store.reads() as r:
        backlog = {row[0]: row for row in store_hooks.backlog(r)}
    out = []
    for h in cfg.hooks:
        _, pending, oldest, attempts, error = backlog.get(h.url, (h.url, 0, None, 0, None))
        out.append(
            {
                "url": h.url,
                "pending": pending,
                "oldest": oldest.isoformat() if oldest else None,
                "attempts": attempts,
                "last_error": error,
            }
        )
    return out


def _variants(st: Step, figures: dict[str, tuple[int, int, int, int]]) -> list[dict[str, Any]]:
    """Each variant of the step (and any other variant its messages were sent as)."""
    metric = st.ab.metric if st.ab else "reply_rate"
    names = [v.name for v in st.variants] + [
        n for n in figures if n not in {v.name for v in st.variants}
    ]
    status = {v.name: v.status for v in st.variants}
    out = []
    for name in names:
        sent, replies, delivered, clicked = figures.get(name, (0, 0, 0, 0))
        hits = {"reply_rate": replies, "delivery_rate": delivered, "click_rate": clicked}[metric]
        out.append(
            {
                "name": name,
                "status": status.get(name, "removed"),
                "sent": sent,
                "replies": replies,
                "delivered": delivered,
                "clicked": clicked,
                "rate": hits / sent if sent else 0.0,
            }
        )
    return out


def _ab(st: Step, started: datetime | None, decided: Any) -> dict[str, Any] | None:
    if st.ab is None:
        return None
    decision = None
    if decided is not None:
        decision = {
            "winner": decided.winner,
            "rule": decided.rule,
            "reason": decided.reason,
            "p_value": decided.p_value,
            "z": decided.z,
            "confidence": decided.confidence,
            "decided_at": decided.decided_at.isoformat(),
            "figures": decided.figures,
        }
    return {
        "metric": st.ab.metric,
        "test_fraction": st.ab.test_fraction,
        "started_at": started.isoformat() if started else None,
        "decide_at": (started + st.ab.wait).isoformat() if started else None,
        "decision": decision,
    }


def _breakers(cfg: Config, store: Store, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """Each channel's circuit breaker: {paused, until, probing, failed, attempts, last_error,
    deferred}; `deferred`: the messages due now that wait for it (0 when not paused)."""
    from campaignctl.breaker import Breaker
    from campaignctl.store import messages

    out: dict[str, Any] = {}
    with store.reads() as s:
        for ch in cfg.channels:
            b = Breaker.from_json(meta.breaker(s, ch))
            failed, attempts, last = b.failures()
            paused = b.paused(now)
            deferred = 0
            if paused:
                deferred = messages.due_count(s, ch, now)
            out[ch] = {
                "paused": paused,
                "probing": paused and b.probing,
                "until": b.until.astimezone(tz).isoformat() if paused and b.until else None,
                "failed": failed,
                "attempts": attempts,
                "last_error": last,
                "deferred": deferred,
            }
    return out


def _warmups(cfg: Config, store: Store, now: datetime, tz: ZoneInfo) -> dict[str, Any]:
    """Each warming-up channel: {day, days, limit (today's), daily_limit, first_send}; `day`
    past `days` once the ramp is over, `first_send` None before the channel's first send."""
    from campaignctl.pacing import Limits, warmup_day

    out: dict[str, Any] = {}
    with store.reads() as s:
        for ch, ch_cfg in cfg.channels.items():
            lim = Limits.of(ch_cfg)
            ramp = lim.warmup
            if ramp is None:
                continue
            first = meta.warmup_start(s, ch) or messages.first_send(s, ch)
            lim = lim.started(first)
            out[ch] = {
                "day": warmup_day(first, now),
                "days": ramp.days,
                "limit": lim.daily_at(now),
                "daily_limit": lim.daily,
                "first_send": first.astimezone(tz).isoformat() if first else None,
            }
    return out


def _sends(cfg: Config, name: str) -> bool:
    c = cfg.campaigns[name]
    return c.status == "active" and bool(c.steps)

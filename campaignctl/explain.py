"""`explain`: every decision about one lead, in time order, from what was recorded when it was made.

The sources, each written where its decision was made:
- the journal (`store.journal`): imports and changes of the lead, deferrals, retries, uncertain
  and reconciled sends, and the holds of the channels its messages waited on;
- the enrolment rows (enrolled when, stopped or completed why) and the message rows (due, sent
  with the provider's id, failed, skipped with the reason);
- the inbound `event` rows: deliveries, replies, opt-outs, bounces;
- the A/B decisions (`ab_decision`) of the steps its messages belong to.

Only one thing is computed now rather than read: why a lead is *not* in a campaign (the audience
evaluated on the lead as it is now, the campaign's status, an opt-out), since a decision not to
enrol is taken again on every pass and is not worth a row per lead and pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from campaignctl.config import Campaign, Config
from campaignctl.store import Store, abtests, journal
from campaignctl.store import events as store_events
from campaignctl.store import leads as store_leads
from campaignctl.store import messages as store_messages
from campaignctl.store.journal import Kind

#: How long before a lead's first enrolment a channel hold may have begun and still held its
#: messages: longer than any hold (a rolling daily limit frees a slot within a day).
HOLD_LOOKBACK = timedelta(days=2)


@dataclass(frozen=True)
class Line:
    """One decision or fact: when, what (a word), about which campaign/step/channel, in words."""

    at: datetime
    what: str
    text: str
    campaign: str | None = None
    step: str | None = None
    channel: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "what": self.what,
            "campaign": self.campaign,
            "step": self.step,
            "channel": self.channel,
            "text": self.text,
            **self.data,
        }


@dataclass(frozen=True)
class Explanation:
    lead: dict[str, Any]
    lines: list[Line]
    now: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "lead": self.lead,
            "now": self.now.isoformat(),
            "timeline": [line.as_json() for line in self.lines],
        }


def explain(cfg: Config, store: Store, address: str, now: datetime) -> Explanation:
    """The timeline of the lead with this email or phone (a `NotFoundError` when there is none)."""
    from campaignctl.leads.lookup import find_lead_row

    tz = ZoneInfo(cfg.settings.timezone)
    with store.reading() as conn:
        lead = find_lead_row(conn, address, cfg.settings.default_region)
        logged = journal.for_lead(conn, lead.id)
        enrolments = store_leads.enrolments_of(conn, lead.id)
        msgs = store_messages.of_lead(conn, lead.id)
        came_back = store_events.of_lead(conn, lead.id)
        optouts = store_leads.optouts_of(conn, [lead.id])[lead.id]
        # a hold lasts a day at most (a rolling daily limit; a breaker's pause is shorter), so
        # the holds that can matter to this lead's messages began after its first enrolment
        first = min((e.enrolled_at for e in enrolments), default=now)
        holds = journal.channel_holds(conn, {m.channel for m in msgs}, first - HOLD_LOOKBACK)
        decided = abtests.decisions(conn, sorted({m.campaign for m in msgs}))
        info = {
            "id": lead.id,
            "email": lead.email,
            "phone": lead.phone,
            "status": lead.status,
            "tags": list(lead.tags),
            "optouts": sorted(optouts),
            "created_at": lead.created_at.isoformat(),
        }
        context = store_leads.lead_context(lead)
    lines: list[Line] = []
    if not any(j.kind == Kind.LEAD_IMPORTED for j in logged):
        lines.append(Line(lead.created_at, "imported", "added to the leads"))
    lines += (_journal_line(j, tz) for j in logged)
    lines += _enrolments(cfg, enrolments, context, optouts, now)
    lines += _messages(cfg, enrolments, msgs, logged, holds, now, tz)
    lines += (_event_line(e) for e in came_back)
    steps = {(m.campaign, m.step) for m in msgs}
    lines += (_ab_line(d) for key, d in decided.items() if key in steps)
    order = {what: i for i, what in enumerate(_ORDER)}
    lines.sort(key=lambda x: (x.at, order.get(x.what, len(order))))
    return Explanation(info, lines, now)


#: Within one instant, the order a reader expects (enrolled before its first message's lines).
_ORDER = ("imported", "updated", "status", "tag", "enrolled", "due", "deferred", "held", "sent")


def _where(row: Any) -> dict[str, Any]:
    return {"campaign": row.campaign, "step": row.step, "channel": row.channel}


def _when(t: datetime | str | None, tz: ZoneInfo) -> str:
    if t is None:
        return "until an outcome is recorded"
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    return f"{t.astimezone(tz):%Y-%m-%d %H:%M}"


def _journal_line(j: Any, tz: ZoneInfo) -> Line:
    d: dict[str, Any] = j.detail or {}
    where = _where(j)
    kind = j.kind
    if kind == Kind.LEAD_IMPORTED:
        return Line(j.at, "imported", f"imported from {_place(d)}", data={"source": j.source})
    if kind == Kind.LEAD_UPDATED:
        fields = ", ".join(d.get("fields", [])) or "nothing"
        origin = f" from {_place(d)}" if d.get("file") else ""
        return Line(j.at, "updated", f"updated by {j.source}{origin}: {fields}")
    if kind == Kind.LEAD_STATUS:
        text = f"status {d.get('from')!s} → {d.get('to')!s} (by {j.source})"
        return Line(j.at, "status", text)
    if kind == Kind.LEAD_TAG:
        return Line(j.at, "tag", f"tag {d.get('tag')!r} {j.code} (by {j.source})")
    if kind == Kind.LEAD_ERASED:
        return Line(j.at, "erased", "erased: fields and message content removed")
    if kind == Kind.REENROLLED:
        text = "enrolled again (reenrol): the event that enrols came again after the sequence ended"
        return Line(j.at, "enrolled", text, **where)
    if kind == Kind.AUDIENCE_ERROR:
        return Line(j.at, "not enrolled", f"audience not computable: {d.get('error')}", **where)
    if kind == Kind.DEFERRED:
        text = f"deferred ({j.code}): {d.get('reason')}; moved to {_when(d.get('until'), tz)}"
        return Line(j.at, "deferred", text, **where, data={"code": j.code})
    if kind == Kind.RETRY:
        text = (
            f"attempt {d.get('attempt')} failed ({j.code}: {d.get('error')}); "
            f"retry at {_when(d.get('until'), tz)}"
        )
        return Line(j.at, "retry", text, **where, data={"code": j.code})
    if kind == Kind.UNCERTAIN:
        return Line(j.at, "uncertain", f"outcome unknown: {d.get('reason')}", **where)
    if kind == Kind.RECONCILED:
        text = f"reconciled with the provider: {d.get('reason')}"
        if d.get("attachments"):
            text += f" (a message with {d['attachments']} attachment(s))"
        return Line(j.at, "reconciled", text, **where, data={"code": j.code})
    return Line(j.at, kind, str(d.get("reason") or kind), **where)


def _place(d: dict[str, Any]) -> str:
    file, line = d.get("file"), d.get("line")
    return f"{file}, line {line}" if line else str(file or "an import")


def _enrolments(
    cfg: Config, enrolments: list[Any], context: dict[str, Any], optouts: set[str], now: datetime
) -> Iterable[Line]:
    have = {e.campaign: e for e in enrolments}
    for e in enrolments:
        camp = cfg.campaigns.get(e.campaign)
        if camp is None:
            why = "(campaign no longer in the campaign file)"
        elif camp.kind == "trigger":
            why = "a trigger event whose audience matched"
        elif camp.enrol_on:
            why = f"an event of its enrol_on ({', '.join(camp.enrol_on)})"
            if camp.audience and camp.audience.strip():
                why += f", audience matched: {camp.audience}"
        elif camp.audience and camp.audience.strip():
            why = f"audience matched: {camp.audience}"
        else:
            why = "every lead (no audience)"
        yield Line(e.enrolled_at, "enrolled", f"enrolled: {why}", campaign=e.campaign)
        if e.state != "active":
            reason = f": {e.reason}" if e.reason else ""
            yield Line(e.updated_at, e.state, f"sequence {e.state}{reason}", campaign=e.campaign)
    for name, camp in cfg.campaigns.items():
        if name in have:
            continue
        why = _not_enrolled(camp, context, optouts, name)
        yield Line(now, "not enrolled", f"not enrolled (as of now): {why}", campaign=name)


def _not_enrolled(camp: Campaign, context: dict[str, Any], optouts: set[str], name: str) -> str:
    """Why the lead, as it is now, is not in campaign `name`: the first rule that keeps it out."""
    from campaignctl.audience import compile_audience, why_not

    if camp.status != "active":
        return f"the campaign is {camp.status}"
    if not camp.steps:
        return "the campaign has no steps"
    first = camp.steps[0].channel
    if optouts & {first, "*"}:
        return f"opted out of {first}, the channel of its first step"
    where = f"campaigns.{name}.audience"
    if camp.audience and camp.audience.strip():
        try:
            matches = compile_audience(camp.audience, where)(context)
        except Exception:  # a lead the expression fails on: why_not says how
            matches = False
        if not matches:
            part = why_not(camp.audience, context, where)
            return f"audience {camp.audience!r} does not match: {part}"
    if camp.kind == "trigger":
        return (
            "a trigger campaign: it enrols on `campaignctl trigger` events, none reached this lead"
        )
    if camp.enrol_on:
        return (
            f"it enrols on events ({', '.join(camp.enrol_on)}), and none of them has happened "
            "to this lead since the campaign began reading them"
        )
    if camp.kind == "blast":
        return "the blast enrolled its audience before this lead was added, or has not started"
    return "matches the audience: enrols at the next send pass"


def _messages(
    cfg: Config,
    enrolments: list[Any],
    msgs: list[Any],
    logged: list[Any],
    holds: list[Any],
    now: datetime,
    tz: ZoneInfo,
) -> Iterable[Line]:
    first_deferral: dict[int, Any] = {}
    for j in logged:
        if j.kind == Kind.DEFERRED and j.message_id not in first_deferral:
            first_deferral[j.message_id] = j
    # what each message's due time was counted from: the enrolment, or the step before's send
    # (per run: a re-enrolled run counts from its own enrolment, journalled as enrolment.again)
    bases = {(e.campaign, 0, 0): e.enrolled_at for e in enrolments}
    bases |= {
        (j.campaign, 0, -int((j.detail or {}).get("event", 0))): j.at
        for j in logged
        if j.kind == Kind.REENROLLED
    }
    bases |= {
        (m.campaign, m.step_index + 1, m.trigger_event): m.sent_at
        for m in msgs
        if m.sent_at is not None
    }
    for m in msgs:
        where = _where(m)
        moved = first_deferral.get(m.id)
        due = m.due_at
        if moved is not None and (moved.detail or {}).get("was_due"):
            due = datetime.fromisoformat(moved.detail["was_due"])
        elif m.first_attempt_at is not None and m.attempts > 1:
            due = min(m.due_at, m.first_attempt_at)
        end = m.sent_at or (m.updated_at if m.state in ("failed", "skipped") else now)
        if m.state == "pending":  # one line: when it goes, and what it waits for
            yield _pending(m, now, tz)
        elif m.state == "skipped" and due > m.updated_at:  # skipped before it fell due
            yield _outcome(m)
        else:
            yield Line(due, "due", f"due on {m.channel}{_scheduled(cfg, m, due, bases)}", **where)
            yield _outcome(m)
        yield from _held(m, holds, due, end, cfg, tz)


def _scheduled(
    cfg: Config, m: Any, due: datetime, bases: dict[tuple[str, int, int], datetime]
) -> str:
    """How the due time was set: the step's delay after its base, moved to the campaign's start
    or to the channel's window in the lead's time zone."""
    base = bases.get((m.campaign, m.step_index, m.trigger_event))
    camp = cfg.campaigns.get(m.campaign)
    if base is None or camp is None or m.step_index >= len(camp.steps):
        return ""
    step = camp.steps[m.step_index]
    from campaignctl.timespec import format_duration

    after = "enrolment" if m.step_index == 0 else "the step before was sent"
    text = f", {format_duration(step.delay)} after {after}" if step.delay else f", at {after}"
    if due > base + step.delay:
        ch = cfg.channels.get(m.channel)
        if ch is not None and (ch.window or ch.days):
            text += f", moved to when the {m.channel} window opens in the lead's time zone"
        else:
            text += ", moved to the campaign's start"
    return text


def _held(
    m: Any, holds: list[Any], start: datetime, end: datetime, cfg: Config, tz: ZoneInfo
) -> Iterable[Line]:
    """The holds of the message's channel while it waited between `start` and `end`."""
    current = None
    for h in holds:
        if h.channel != m.channel:
            continue
        if h.kind == Kind.CHANNEL_HELD:
            current = h
        else:
            if current is not None and h.at > start and current.at < end:
                yield _hold_line(m, current, start, cfg, tz, released=h.at)
            current = None
    if current is not None and current.at < end:
        yield _hold_line(m, current, start, cfg, tz, released=None)


def _hold_line(
    m: Any, h: Any, start: datetime, cfg: Config, tz: ZoneInfo, released: datetime | None
) -> Line:
    d = h.detail or {}
    camp = cfg.campaigns.get(m.campaign)
    prio = (
        f"; due messages go in campaign priority order ({m.campaign}: {camp.priority})"
        if camp
        else ""
    )
    until = f"released {_when(released, tz)}" if released else f"until {_when(d.get('until'), tz)}"
    text = f"channel {m.channel} held ({h.code}): {d.get('reason')}; {until}{prio}"
    return Line(max(h.at, start), "held", text, m.campaign, m.step, m.channel, {"code": h.code})


def _outcome(m: Any) -> Line:
    where = _where(m)
    variant = f" (variant {m.variant})" if m.variant else ""
    if m.state == "sent":
        text = f"sent to {m.recipient}{variant}, provider id {m.provider_id or '-'}"
        if getattr(m, "attachments", None):
            from campaignctl.attachments import describe

            text += f", attached {describe(m.attachments)}"
        if m.error:
            text += f"; later reported: {m.error}"
        return Line(
            m.sent_at or m.updated_at, "sent", text, **where, data={"provider_id": m.provider_id}
        )
    if m.state == "failed":
        reason = f" ({m.reason})" if m.reason else ""
        text = f"failed: {m.error_code or 'error'}: {m.error or ''}{reason}".rstrip()
        return Line(m.updated_at, "failed", text, **where, data={"code": m.error_code})
    if m.state == "skipped":
        text = f"skipped: {m.reason or 'no reason recorded'}"
        return Line(m.updated_at, "skipped", text, **where, data={"code": m.reason_code})
    if m.state == "sending":
        return Line(m.claimed_at or m.updated_at, "sending", "claimed and being sent", **where)
    if m.state == "uncertain":
        text = "outcome unknown: asked of the provider before any retry"
        return Line(m.updated_at, "uncertain", text, **where)
    raise AssertionError(f"no outcome line for state {m.state!r}")  # pragma: no cover


def _pending(m: Any, now: datetime, tz: ZoneInfo) -> Line:
    """A message that has not gone: due when, and the reason it last moved."""
    if m.due_at > now:
        text = f"due on {m.channel}: goes at {_when(m.due_at, tz)} at the earliest"
        at = m.due_at
    else:
        text = f"due on {m.channel} since {_when(m.due_at, tz)}: goes at the next send pass"
        at = now
    if m.reason:
        text += f" (last moved: {m.reason})"
    return Line(at, "pending", text, **_where(m), data={"code": m.reason_code})


def _ab_line(d: Any) -> Line:
    """The A/B decision of a step this lead has a message in."""
    p = "" if d.p_value is None else f"p-value {d.p_value:.4g}, "
    text = f"A/B winner {d.winner} by {d.metric} ({p}rule {d.rule}: {d.reason})"
    data = {"winner": d.winner, "rule": d.rule, "p_value": d.p_value}
    return Line(d.decided_at, "ab decided", text, d.campaign, d.step, data=data)


def _event_line(e: Any) -> Line:
    d = e.detail or {}
    text = {
        "delivered": "delivered",
        "undelivered": "not delivered",
        "read": "read",
        "reply": "replied",
        "optout": f"opted out of {e.channel if e.channel != '*' else 'every channel'}",
        "optin": f"opted back in to {e.channel}",
        "bounce": "bounced",
        "help": "asked for help",
    }.get(e.kind, e.kind)
    extra = d.get("by") or d.get("keyword") or d.get("error") or d.get("status")
    if extra:
        text += f" ({extra})"
    return Line(e.occurred_at, e.kind, text, channel=e.channel, data={"event": e.id})

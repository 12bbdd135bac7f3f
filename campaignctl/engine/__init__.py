"""The sending engine: one pass enrols, reconciles, claims, sends and records.

`send` (one run from cron or a terminal) and `daemon` drive the same `Engine.run_pass(now, rng)`;
`campaignctl.runner` wraps it in an APScheduler loop. The database is the only source of truth:
a message is claimed (`sending`, with who and when) in a short BEGIN IMMEDIATE transaction before
its provider is called and recorded right after, so whatever the engine forgets when it crashes,
the next pass finds in the database. See docs/engine.md.
"""

from __future__ import annotations

import json
import os
import random
import socket
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from campaignctl.audience import AudienceError, compile_audience
from campaignctl.breaker import Attempt, Breaker
from campaignctl.channels.base import (
    UNSENDABLE,
    BatchReconciler,
    Channel,
    ChannelError,
    ErrorKind,
    Outgoing,
    Reconciled,
    Reconciliation,
    Sent,
)
from campaignctl.config import Campaign, ChannelBase, Config, Step
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
    retry_delay,
)
from campaignctl.store import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    UNCERTAIN,
    Store,
    lead_context,
    meta,
)
from campaignctl.store import leads as store_leads
from campaignctl.store import messages as store_messages
from campaignctl.store.conn import Conn

#: A `sending` row claimed on another host is judged abandoned after this long.
FOREIGN_CLAIM_TIMEOUT = timedelta(hours=1)
#: Claim at most this many messages per transaction (one commit covers them all).
BATCH = 100
#: Uncertain messages settled per pass: by a channel that answers for many with one request,
#: by one asked message by message; one it could not settle is asked again this much later.
RECONCILE_BATCH = 500
RECONCILE_SINGLE = 20
RECONCILE_AGAIN = timedelta(minutes=1)
#: What a pass counts, per (campaign, step, channel).
#: `deferred_breaker`: due on a channel its circuit breaker pauses (the provider is failing),
#: not held by a limit.
COUNTERS = (
    "sent",
    "deferred_limit",
    "deferred_window",
    "deferred_breaker",
    "failed",
    "skipped",
    "retry",
    "uncertain",
)


# ---------------------------------------------------------------- who is sending


def _start_ticks(pid: int) -> str:
    """The process start time from /proc (guards against pid reuse); '' where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def worker_id() -> str:
    """This process, as written in `claimed_by`: host, pid and start time."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def worker_alive(worker: str) -> bool | None:
    """Whether the process that wrote `claimed_by` still runs; None when it is on another host."""
    host, _, rest = worker.partition(":")
    pid_s, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid_s.isdigit():
        return None
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not ticks or _start_ticks(pid) in ("", ticks)


# ---------------------------------------------------------------- shared with the planner


def campaign_start(camp: Campaign, default_tz: str) -> datetime | None:
    """The campaign's `start_at` as an instant (a TOML local time is in settings.timezone)."""
    if camp.start_at is None:
        return None
    if camp.start_at.tzinfo is None:
        return camp.start_at.replace(tzinfo=ZoneInfo(default_tz))
    return camp.start_at


# ---------------------------------------------------------------- audiences


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    hash(value)  # TypeError for anything else unhashable: the caller evaluates instead
    return value


class AudienceMatcher:
    """`compile_audience`, remembered per distinct value of the fields the expression reads.

    `status == 'new' and 'buyer' in tags` reads only `status` and `tags`, so 100,000 leads need
    a handful of evaluations. An expression that reads `lead` (the whole mapping) is evaluated
    for every lead; `fields` is then None.

    A lead the expression cannot be evaluated for (`lead.budget|int` on a lead without a
    budget) does not match: it is counted in `failures`, with the first error in `reason`, so
    one lead's data never stops a campaign (or the others).
    """

    _MISSING = object()

    def __init__(self, expr: str | None, where: str) -> None:
        self._matches = compile_audience(expr, where)
        self.fields: frozenset[str] | None = frozenset()
        if expr is not None and expr.strip():
            from jinja2 import meta
            from jinja2.sandbox import SandboxedEnvironment

            names = meta.find_undeclared_variables(
                SandboxedEnvironment().parse(f"{{{{ {expr} }}}}")
            )
            self.fields = None if "lead" in names else frozenset(names)
        self._names = sorted(self.fields or ())
        self._seen: dict[tuple[Any, ...], bool | str] = {}
        self.failures = 0
        self.reason: str | None = None

    def _evaluate(self, lead: Mapping[str, Any]) -> bool | str:
        """True or False, or the error message when the expression fails on this lead."""
        try:
            return self._matches(lead)
        except AudienceError as exc:
            return exc.message

    def __call__(self, lead: Mapping[str, Any]) -> bool:
        if self.fields is None:
            answer = self._evaluate(lead)
        else:
            try:
                key = tuple(_frozen(lead.get(n, self._MISSING)) for n in self._names)
            except TypeError:
                answer = self._evaluate(lead)
            else:
                if key not in self._seen:
                    self._seen[key] = self._evaluate(lead)
                answer = self._seen[key]
        if isinstance(answer, str):
            self.failures += 1
            self.reason = self.reason or answer
            return False
        return answer


# ---------------------------------------------------------------- results


@dataclass
class PassResult:
    """What one pass did, and when the next one has something to do."""

    counts: dict[tuple[str, str, str], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    )
    #: Earliest instant a due message may go, when only pacing (per_second, min_interval,
    #: jitter) holds it: `send` waits for these.
    pace_until: datetime | None = None
    #: Earliest instant anything may go (limits, windows, delays included): the daemon waits.
    next_due: datetime | None = None
    #: Channels stopped by refused credentials, with the error.
    auth_errors: dict[str, ChannelError] = field(default_factory=dict)
    transient_errors: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Per campaign: leads its audience could not be evaluated for at the last enrolment, and
    #: the first error (they are not enrolled; the next enrolment tries them again).
    audience_skipped: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: Channels paused by their circuit breaker at the end of the pass.
    paused: dict[str, Breaker] = field(default_factory=dict)
    #: Campaigns whose skipped-lead count or reason differs from the one recorded before
    #: (`send --quiet` warns only then), and channels whose breaker tripped in this pass.
    audience_changed: set[str] = field(default_factory=set)
    tripped: set[str] = field(default_factory=set)

    def add(self, campaign: str, step: str, channel: str, counter: str, n: int = 1) -> None:
        self.counts[(campaign, step, channel)][counter] += n

    def total(self, counter: str) -> int:
        return sum(c[counter] for c in self.counts.values())

    def merge(self, other: PassResult) -> None:
        """Add another pass's counts into this one (a run is many passes)."""
        for key, c in other.counts.items():
            for k, v in c.items():
                self.counts[key][k] += v
        self.auth_errors.update(other.auth_errors)
        self.transient_errors += other.transient_errors
        self.audience_skipped.update(other.audience_skipped)  # the latest enrolment's count
        self.audience_changed |= other.audience_changed
        self.tripped |= other.tripped


@dataclass
class _LeadInfo:
    id: int
    email: str | None
    phone: str | None
    timezone: str | None
    default_tz: str
    context: dict[str, Any]
    _tz: ZoneInfo | None = None

    @property
    def tz(self) -> ZoneInfo:
        """Looked up on first use: a phone number's zone costs tens of microseconds."""
        if self._tz is None:
            self._tz = lead_zone(self.timezone, self.phone, self.default_tz)
        return self._tz


def _full_name(context: dict[str, Any]) -> str:
    """ "First Last" for an email's To header; empty when the lead has no name."""
    return " ".join(str(context[k]) for k in ("first_name", "last_name") if context.get(k))


@dataclass
class _Claimed:
    row_id: int
    campaign: str
    step: Step
    index: int
    lead: _LeadInfo
    out: Outgoing
    attempts: int
    first_attempt: datetime | None  # before this claim (restored when released unsent)


def _attempt(outcome: object, at: datetime) -> Attempt | None:
    """A send's outcome for the circuit breaker; None when it says nothing about the provider
    (released unsent, or refused credentials, which stop the channel anyway)."""
    if outcome is None:
        return None
    if isinstance(outcome, ChannelError):
        if outcome.kind is ErrorKind.AUTH or outcome.code == UNSENDABLE:
            return None  # an unsendable message never reached the provider
        if outcome.kind is ErrorKind.TRANSIENT:
            return Attempt(at, False, outcome.message)
        return Attempt(at, True)  # a permanent refusal is an answer: the provider is up
    if isinstance(outcome, BaseException):
        return Attempt(at, False, f"{type(outcome).__name__}: {outcome}")
    return Attempt(at, True)


def gives_up(ch: ChannelBase, attempts: int, first: datetime, now: datetime) -> bool:
    """Whether a message that met a transient error is failed rather than retried: only after
    `give_up_after` since its first attempt, and after at least `max_attempts` attempts."""
    return attempts >= ch.max_attempts and now - first >= ch.give_up_after


def _soonest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# ---------------------------------------------------------------- the engine


class Engine:
    """Sends a campaign file's messages through its channels, recording everything in `store`.

    `channels` replaces providers by name (the planner and `--dry-run` pass recording ones);
    `campaigns` and `channel_names` restrict a run (`send --campaign`, `--channel`).
    """

    def __init__(
        self,
        cfg: Config,
        store: Store,
        *,
        channels: Mapping[str, Channel] | None = None,
        campaigns: Iterable[str] | None = None,
        channel_names: Iterable[str] | None = None,
        worker: str | None = None,
        batch: int = BATCH,
        enrol_every: timedelta = timedelta(seconds=60),
    ) -> None:
        from campaignctl.render import Renderer

        self.cfg = cfg
        self.store = store
        self.worker = worker or worker_id()
        self.batch = batch
        self.enrol_every = enrol_every
        self.renderer = Renderer(cfg)
        self.campaign_filter = set(campaigns) if campaigns is not None else None
        self.channel_filter = set(channel_names) if channel_names is not None else None
        for name in self.campaign_filter or ():
            cfg.campaign(name)  # a NotFoundError naming the typo
        for name in self.channel_filter or ():
            if name not in cfg.channels:
                from campaignctl.config import did_you_mean
                from campaignctl.errors import NotFoundError

                raise NotFoundError(
                    f"{cfg.path}: no channel named {name!r}{did_you_mean(name, cfg.channels)}",
                    "the channels are the [channels.NAME] tables of the campaign file",
                )
        self._channels: dict[str, Channel] = dict(channels or {})
        self.limits = {name: Limits.of(ch) for name, ch in cfg.channels.items()}
        self.hours = {name: Hours(ch.window, ch.days) for name, ch in cfg.channels.items()}
        self.default_tz = cfg.settings.timezone
        self._jitters: dict[tuple[str, datetime], timedelta] = {}
        self._last_enrol: datetime | None = None
        self._stopped: set[str] = set()
        # each channel's breaker as the last claim saw it (a batch stops sending when it trips)
        self._breakers: dict[str, Breaker] = {}
        self._asked: dict[int, datetime] = {}  # uncertain messages the channel could not settle

    # -------------------------------------------------------------- configuration views

    def active_campaigns(self) -> dict[str, Campaign]:
        """The campaigns this engine sends for: active, with steps, within the filter."""
        return {
            name: c
            for name, c in self.cfg.campaigns.items()
            if c.status == "active"
            and c.steps
            and (self.campaign_filter is None or name in self.campaign_filter)
        }

    def channel_names(self) -> list[str]:
        return [
            n
            for n in self.cfg.channels
            if (self.channel_filter is None or n in self.channel_filter) and n not in self._stopped
        ]

    def channel(self, name: str) -> Channel:
        """The adapter for `name`, opened on first use."""
        if name not in self._channels:
            from campaignctl.channels import open_channel

            self._channels[name] = open_channel(self.cfg, name)
        return self._channels[name]

    def retry_channels(self) -> None:
        """Give channels stopped by refused credentials another chance (a daemon does, later)."""
        self._stopped.clear()

    def close(self) -> None:
        """Close every channel this engine opened."""
        for ch in self._channels.values():
            ch.close()

    def start_at(self, camp: Campaign) -> datetime | None:
        return campaign_start(camp, self.default_tz)

    def _lead(self, row: Any) -> _LeadInfo:
        ctx = lead_context(row)
        return _LeadInfo(row.id, row.email, row.phone, row.timezone, self.default_tz, ctx)

    def _leads(self, conn: Conn, ids: Iterable[int]) -> dict[int, _LeadInfo]:
        return {row.id: self._lead(row) for row in store_leads.by_ids(conn, list(set(ids)))}

    # -------------------------------------------------------------- the pass

    def run_pass(
        self,
        now: datetime,
        rng: random.Random,
        *,
        limit: int | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> PassResult:
        """One pass at instant `now`: archive, recover, reconcile, enrol, then send what may go.

        Sends at most `limit` messages; checks `should_stop` between sends. Every send in the
        pass is stamped `now`: a pass sends only what may go at that instant (one message on a
        paced channel), and its result says when the next pass has work.
        """
        res = PassResult()
        self._skip_archived(now, res)
        self._recover(now)
        self._reconcile(now, res)
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
            outcomes = self._send(claimed, res, should_stop)
            self._record(outcomes, now, rng, res)
            sent += sum(1 for _, o in outcomes if isinstance(o, Sent))
        self._complete_blasts(now)
        self._look_ahead(now, rng, res)
        return res

    # -------------------------------------------------------------- housekeeping

    def _skip_archived(self, now: datetime, res: PassResult) -> None:
        """Pending messages of archived (or removed) campaigns will never go: say so."""
        archived = [
            n
            for n, c in self.cfg.campaigns.items()
            if c.status == "archived"
            and (self.campaign_filter is None or n in self.campaign_filter)
        ]
        if not archived:
            return
        with self.store.write() as s:
            store_messages.skip_pending(s, archived, "campaign archived", now)

    def _recover(self, now: datetime) -> None:
        """A `sending` row whose process is gone becomes `uncertain` (no blind resend)."""
        with self.store.read() as s:
            rows = store_messages.sending(s)
            stale = []
            for r in rows:
                if r.claimed_by == self.worker:
                    stale.append(r.id)  # ours from a pass that died half way
                    continue
                alive = worker_alive(r.claimed_by or "")
                if alive is False or (
                    alive is None
                    and r.claimed_at is not None
                    and now - r.claimed_at > FOREIGN_CLAIM_TIMEOUT
                ):
                    stale.append(r.id)
        if not stale:
            return
        with self.store.write() as s:
            store_messages.mark_uncertain(
                s, stale, "the sending process stopped before recording the outcome", now
            )

    def _reconcile(self, now: datetime, res: PassResult) -> None:
        """Ask each channel about its `uncertain` messages before sending anything new.

        The work is bounded so every pass also sends: a channel that settles many at once
        (`BatchReconciler`: one Twilio list, one Gmail search) gets up to `RECONCILE_BATCH`,
        one asked message by message up to `RECONCILE_SINGLE`; a message the channel could not
        settle is asked again only `RECONCILE_AGAIN` later (by this engine).
        """
        names = self.channel_names()
        with self.store.read() as s:
            conn = s.connection()
            rows = store_messages.uncertain(conn, names)
            if not rows:
                return
            leads = self._leads(conn, (r.lead_id for r in rows))
        by_channel: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            last = self._asked.get(r.id)
            if r.lead_id not in leads or (last is not None and now - last < RECONCILE_AGAIN):
                res.add(r.campaign, r.step, r.channel, "uncertain")
            else:
                by_channel[r.channel].append(r)
        for ch, todo in by_channel.items():
            answers, asked = self._ask(ch, todo, leads, now, res)
            w = store_messages.Writes()
            for r in todo:
                answer = answers.get(r.id)
                if answer is None or answer.outcome is Reconciled.UNKNOWN:
                    if r.id in asked:
                        self._asked[r.id] = now
                    res.add(r.campaign, r.step, r.channel, "uncertain")
                else:
                    self._settle(w, r, leads[r.lead_id], answer, now, res)
            with self.store.write() as s:
                w.flush(s.connection())

    def _ask(
        self, ch: str, rows: list[Any], leads: dict[int, _LeadInfo], now: datetime, res: PassResult
    ) -> tuple[dict[int, Reconciliation], set[int]]:
        """The channel's answers for these uncertain rows (those it could not answer are left
        out), and the ids it was asked about (the others wait for a later pass)."""
        answers: dict[int, Reconciliation] = {}
        asked: set[int] = set()
        try:
            channel = self.channel(ch)
            if isinstance(channel, BatchReconciler):
                outs = [self._lost(r, leads[r.lead_id], now) for r in rows[:RECONCILE_BATCH]]
                asked = {o.id for o in outs}
                return channel.reconcile_many(outs), asked
            for r in rows[:RECONCILE_SINGLE]:
                asked.add(r.id)
                try:
                    answers[r.id] = channel.reconcile(self._lost(r, leads[r.lead_id], now))
                except ChannelError:
                    raise
                except Exception:  # a channel that cannot answer leaves the message uncertain
                    continue
        except ChannelError as exc:
            if exc.kind is ErrorKind.AUTH:
                res.auth_errors[ch] = exc
                self._stopped.add(ch)
        except Exception:  # a channel that cannot answer leaves its messages uncertain
            pass
        return answers, asked

    def _settle(
        self,
        w: store_messages.Writes,
        r: Any,
        lead: _LeadInfo,
        answer: Reconciliation,
        now: datetime,
        res: PassResult,
    ) -> None:
        """Record what the provider said about an uncertain message."""
        if answer.outcome is Reconciled.SENT:
            at = r.claimed_at or now
            sent = Sent(answer.provider_id or "", answer.thread_id or r.thread_id)
            self._mark_sent(w, r.id, r.campaign, r.step, lead, at, now, sent)
            w.set(r.id, now, reason="reconciled: the provider has it")
            res.events.append({"event": "reconciled", "id": r.id, "outcome": "sent"})
            return
        ch_cfg = self.cfg.channels[r.channel]
        first = r.first_attempt_at or r.claimed_at or now
        if gives_up(ch_cfg, r.attempts, first, now):
            w.set(
                r.id,
                now,
                state=FAILED,
                reason=f"reconciled: never got it, after {r.attempts} attempt(s)",
            )
            w.end_enrolment(r.campaign, r.lead_id, "stopped", f"step {r.step} failed", now)
        else:
            w.set(
                r.id,
                now,
                state=PENDING,
                due_at=max(r.due_at, now),  # a transient error's backoff still holds
                claimed_by=None,
                reason="reconciled: the provider never got it",
            )
        res.events.append({"event": "reconciled", "id": r.id, "outcome": "not_sent"})

    def _lost(self, r: Any, lead: _LeadInfo, now: datetime) -> Outgoing:
        """The uncertain message as it was handed to its channel, for `reconcile`.

        The content is not stored, so it is rendered again (the variant is chosen by lead, so
        it is the same): a channel that matches by body (Twilio) must not take another message
        to the same number for this one. When it cannot be rendered the text stays empty and
        the channel answers that it cannot tell.
        """
        from campaignctl.render import RenderError

        content: dict[str, Any] = {"text": ""}
        camp = self.cfg.campaigns.get(r.campaign)
        names = [st.name for st in camp.steps] if camp is not None else []
        if camp is not None and r.step in names:
            index = names.index(r.step)
            try:
                rendered = self.renderer.render(
                    r.campaign, index, camp.steps[index], lead.context, lead_key=lead.id
                )
            except RenderError:
                pass
            else:
                content = {
                    "text": rendered.text,
                    "subject": rendered.subject,
                    "html": rendered.html,
                    "content_sid": rendered.content_sid,
                    "content_variables": rendered.content_variables,
                    "unsubscribe_url": rendered.unsubscribe_url,
                }
        return Outgoing(
            id=r.id,
            campaign=r.campaign,
            step=r.step,
            channel=r.channel,
            kind=self.cfg.channel_kind(r.channel),
            to=r.recipient or "",
            claimed_at=r.claimed_at or now,
            rfc_message_id=r.message_id,
            thread_id=r.thread_id,
            **content,
        )

    # -------------------------------------------------------------- enrolment

    def enrol(self, now: datetime, res: PassResult | None = None) -> int:
        """Enrol matching leads: sequences on every pass, a blast once (at `start_at`).

        Leads an audience cannot be evaluated for are left out, counted in
        `res.audience_skipped` and in `meta` (`audience.NAME.skipped`, which `status` shows).
        """
        total = 0
        for name, camp in self.active_campaigns().items():
            start = self.start_at(camp)
            if camp.kind == "blast":
                if start is not None and now < start:
                    continue
                with self.store.read() as s:
                    if meta.blast_enrolled(s, name) is not None:
                        continue
            total += self._enrol_campaign(name, camp, now, start, res)
        return total

    def _enrol_campaign(
        self,
        name: str,
        camp: Campaign,
        now: datetime,
        start: datetime | None,
        res: PassResult | None = None,
    ) -> int:
        matches = AudienceMatcher(camp.audience, f"campaigns.{name}.audience")
        first = camp.steps[0]
        with self.store.write() as s:
            conn = s.connection()
            rows = store_leads.enrollable(conn, name, [first.channel, "*"])
            enrolments: list[dict[str, Any]] = []
            messages: list[dict[str, Any]] = []
            for row in rows:
                lead = self._lead(row)
                if not matches(lead.context):
                    continue
                enrolments.append(
                    {
                        "campaign": name,
                        "lead_id": lead.id,
                        "state": "active",
                        "enrolled_at": now,
                        "updated_at": now,
                    }
                )
                due = self._due(now, first, lead, start)
                messages.append(self._new_message(name, first, 0, lead.id, due, now))
            if enrolments:
                store_messages.enrol(conn, enrolments, messages)
            if camp.kind == "blast":
                meta.set_blast_enrolled(conn, name, now)
            value = None
            if matches.failures:
                reason = matches.reason or ""
                value = json.dumps({"count": matches.failures, "reason": reason})
                if res is not None:
                    res.audience_skipped[name] = (matches.failures, reason)
            changed = meta.set_audience_skipped(conn, name, value, now)
            if changed and value is not None and res is not None:
                res.audience_changed.add(name)
        return len(enrolments)

    @staticmethod
    def _new_message(
        campaign: str, step: Step, index: int, lead_id: int, due: datetime, now: datetime
    ) -> dict[str, Any]:
        return {
            "campaign": campaign,
            "step": step.name,
            "step_index": index,
            "lead_id": lead_id,
            "channel": step.channel,
            "state": PENDING,
            "due_at": due,
            "attempts": 0,
            "updated_at": now,
        }

    def _due(self, base: datetime, step: Step, lead: _LeadInfo, start: datetime | None) -> datetime:
        hours = self.hours[step.channel]
        # an always-open channel needs no time zone (and no phone-number lookup)
        return due_after(base, step.delay, hours, UTC if hours.always else lead.tz, start)

    def _advance(
        self,
        w: store_messages.Writes,
        campaign: str,
        step_name: str,
        lead: _LeadInfo,
        base: datetime,
    ) -> None:
        """After a step is done for a lead: create the next one, or complete the enrolment."""
        camp = self.cfg.campaigns.get(campaign)
        names = [s.name for s in camp.steps] if camp else []
        if camp is None or step_name not in names or names.index(step_name) + 1 >= len(names):
            w.end_enrolment(campaign, lead.id, "completed", None, base)
            return
        index = names.index(step_name) + 1
        step = camp.steps[index]
        due = self._due(base, step, lead, self.start_at(camp))
        w.messages.append(self._new_message(campaign, step, index, lead.id, due, base))

    def _complete_blasts(self, now: datetime) -> None:
        """A blast whose every enrolment is done is completed (recorded in meta)."""
        for name, camp in self.active_campaigns().items():
            if camp.kind != "blast":
                continue
            with self.store.read() as s:
                if meta.blast_enrolled(s, name) is None:
                    continue
                if meta.campaign_completed(s, name) is not None:
                    continue
            with self.store.write() as s:
                conn = s.connection()
                if store_leads.active_count(conn, name) == 0:
                    meta.set_campaign_completed(conn, name, now)

    # -------------------------------------------------------------- limits

    def history(self, conn: Conn, channel: str, now: datetime) -> list[datetime]:
        """The sends the channel's limits look at, at `now` (none for an unlimited channel)."""
        lim = self.limits[channel]
        if not (lim.daily or lim.hourly or lim.paced):
            return []
        return store_messages.send_history(conn, channel, now - lim.lookback - timedelta(seconds=1))

    def _jitter(self, channel: str, last: datetime, rng: random.Random) -> timedelta:
        """The random extra gap after the send at `last`, drawn once so re-checks agree."""
        key = (channel, last)
        if key not in self._jitters:
            if len(self._jitters) > 1024:
                self._jitters.clear()
            self._jitters[key] = draw_jitter(self.limits[channel], rng)
        return self._jitters[key]

    def _slot(
        self, channel: str, hist: list[datetime], now: datetime, rng: random.Random
    ) -> datetime:
        lim = self.limits[channel]
        jitter = self._jitter(channel, hist[-1], rng) if hist else timedelta(0)
        return next_slot(lim, hist, now, jitter)

    # -------------------------------------------------------------- claim, send, record

    def _candidates(
        self, conn: Conn, ch: str, now: datetime, active: dict[str, Campaign], n: int
    ) -> list[Any]:
        """Due pending messages on `ch`, best first: by campaign priority, then due time and id.

        One query per priority level, each ordered as the (state, due_at) index is, so SQLite
        reads only the rows it returns instead of sorting every due message.
        """
        groups = (
            [name for name, c in active.items() if c.priority == prio]
            for prio in sorted({c.priority for c in active.values()})
        )
        return store_messages.claimable(conn, ch, now, groups, n)

    def _claim(
        self, now: datetime, rng: random.Random, want: int, res: PassResult
    ) -> list[_Claimed]:
        """Claim up to `want` due messages, within every channel's limits, in one transaction."""
        active = self.active_campaigns()
        if not active:
            return []
        claimed: list[_Claimed] = []
        with self.store.write() as s:
            conn = s.connection()
            for ch in self.channel_names():
                room = want - len(claimed)
                if room <= 0:
                    break
                breaker = self.breaker(conn, ch)
                gate = breaker.gate(now)
                if gate == 0:
                    continue  # paused: the messages keep their attempts
                hist = self.history(conn, ch, now)
                cap = capacity(self.limits[ch], hist, now)
                if cap > 0 and hist and self._slot(ch, hist, now, rng) > now:
                    cap = 0
                cap = min(cap, room, gate if gate is not None else cap)
                if cap <= 0:
                    continue
                got = self._claim_channel(conn, ch, cap, now, active, res)
                if got and gate == 1:  # the probe: every other claim waits for its outcome
                    self._save_breaker(conn, ch, breaker.probe(now), now)
                self._breakers[ch] = breaker.probe(now) if got and gate == 1 else breaker
                claimed.extend(got)
        return claimed

    @staticmethod
    def breaker(conn: Conn, channel: str) -> Breaker:
        """The channel's circuit breaker as stored (closed when never tripped)."""
        return Breaker.from_json(meta.breaker(conn, channel))

    @staticmethod
    def _save_breaker(conn: Conn, channel: str, breaker: Breaker, now: datetime) -> None:
        meta.set_breaker(conn, channel, breaker.to_json(), now)

    def _claim_channel(
        self,
        conn: Conn,
        ch: str,
        cap: int,
        now: datetime,
        active: dict[str, Campaign],
        res: PassResult,
    ) -> list[_Claimed]:
        from campaignctl.channels.mime import new_message_id
        from campaignctl.render import RenderError

        out: list[_Claimed] = []
        w = store_messages.Writes()
        while len(out) < cap:
            w.flush(conn)
            rows = self._candidates(conn, ch, now, active, cap - len(out) + 20)
            if not rows:
                break
            try:
                self.channel(ch)  # opened (credentials read) before anything is claimed for it
            except ChannelError as exc:
                res.auth_errors[ch] = exc
                self._stopped.add(ch)
                break
            ids = [r.lead_id for r in rows]
            leads = self._leads(conn, ids)
            optouts = store_leads.optouts_of(conn, ids)
            states = store_leads.enrolment_states(conn, ids)
            kind = self.cfg.channel_kind(ch)
            for r in rows:
                if len(out) >= cap:
                    break
                camp = active[r.campaign]
                lead = leads.get(r.lead_id)
                steps = {st.name: i for i, st in enumerate(camp.steps)}
                skip = None
                state = states.get((r.campaign, r.lead_id), ("active", None))
                if lead is None:
                    skip = "lead deleted"
                elif state[0] != "active":
                    skip = f"enrolment {state[0]}" + (f": {state[1]}" if state[1] else "")
                elif optouts[r.lead_id] & {ch, "*"}:
                    skip = f"opted out of {ch}"
                elif r.step not in steps:
                    skip = "step removed from the campaign file"
                if skip is not None:
                    w.set(r.id, now, state=SKIPPED, reason=skip)
                    res.add(r.campaign, r.step, ch, "skipped")
                    if lead is not None and skip.startswith("opted out"):
                        self._after_optout(w, r.campaign, r.step, lead, now)
                    continue
                assert lead is not None
                index = steps[r.step]
                step = camp.steps[index]
                hours = self.hours[ch]
                if not hours.always and not is_open(now, hours, lead.tz):
                    later = next_open(now, hours, lead.tz)
                    w.set(r.id, now, due_at=later, reason="outside the sending window")
                    res.add(r.campaign, r.step, ch, "deferred_window")
                    continue
                to = lead.email if kind == "email" else lead.phone
                if not to:
                    what = "email address" if kind == "email" else "phone number"
                    w.set(r.id, now, state=SKIPPED, reason=f"lead has no {what}")
                    res.add(r.campaign, r.step, ch, "skipped")
                    self._advance(w, r.campaign, r.step, lead, now)
                    continue
                try:
                    rendered = self.renderer.render(
                        r.campaign, index, step, lead.context, lead_key=lead.id
                    )
                    subject = rendered.subject
                    in_reply_to = thread_id = None
                    if kind == "email" and step.thread:
                        in_reply_to, thread_id, first_subject = self._thread(conn, r.campaign, lead)
                        if in_reply_to is not None:
                            from campaignctl.channels.mime import reply_subject

                            subject = reply_subject(first_subject)
                except RenderError as exc:
                    w.set(r.id, now, state=FAILED, error_code="render", error=exc.message)
                    w.end_enrolment(r.campaign, lead.id, "stopped", f"step {r.step} failed", now)
                    res.add(r.campaign, r.step, ch, "failed")
                    res.events.append(
                        {
                            "event": "failed",
                            "id": r.id,
                            "campaign": r.campaign,
                            "step": r.step,
                            "channel": ch,
                            "to": to,
                            "lead": lead.id,
                            "error": exc.message,
                        }
                    )
                    continue
                mid = new_message_id(self.cfg.sender.email) if kind == "email" else None
                w.set(
                    r.id,
                    now,
                    state=SENDING,
                    claimed_by=self.worker,
                    claimed_at=now,
                    attempts=r.attempts + 1,
                    first_attempt_at=r.first_attempt_at or now,
                    recipient=to,
                    variant=rendered.variant,
                    message_id=mid,
                    thread_id=thread_id,
                    reason=None,
                )
                msg = Outgoing(
                    id=r.id,
                    campaign=r.campaign,
                    step=r.step,
                    channel=ch,
                    kind=kind,
                    to=to,
                    text=rendered.text,
                    claimed_at=now,
                    subject=subject,
                    html=rendered.html,
                    rfc_message_id=mid,
                    in_reply_to=in_reply_to,
                    thread_id=thread_id,
                    content_sid=rendered.content_sid,
                    content_variables=rendered.content_variables,
                    to_name=_full_name(lead.context),
                    unsubscribe_url=rendered.unsubscribe_url,
                )
                out.append(
                    _Claimed(
                        r.id, r.campaign, step, index, lead, msg, r.attempts + 1, r.first_attempt_at
                    )
                )
        w.flush(conn)
        return out

    def _thread(
        self, conn: Conn, campaign: str, lead: _LeadInfo
    ) -> tuple[str | None, str | None, str | None]:
        """The Message-ID, thread id and subject of the campaign's first email sent to `lead`."""
        camp = self.cfg.campaigns[campaign]
        for i, st in enumerate(camp.steps):
            if self.cfg.channel_kind(st.channel) != "email":
                continue
            row = store_messages.sent_thread(conn, campaign, st.name, lead.id)
            if row is None or not row.message_id:
                continue
            first = self.renderer.render(campaign, i, st, lead.context, lead_key=lead.id)
            return row.message_id, row.thread_id, first.subject
        return None, None, None

    def _after_optout(
        self, w: store_messages.Writes, campaign: str, step: str, lead: _LeadInfo, now: datetime
    ) -> None:
        camp = self.cfg.campaigns.get(campaign)
        if camp is not None and "optout" in camp.stop_on:
            w.end_enrolment(campaign, lead.id, "stopped", "optout", now)
        else:
            self._advance(w, campaign, step, lead, now)

    def _send(
        self,
        claimed: list[_Claimed],
        res: PassResult,
        should_stop: Callable[[], bool] | None,
    ) -> list[tuple[_Claimed, Sent | ChannelError | BaseException | None]]:
        """Hand each claimed message to its channel. None means: released unsent."""
        outcomes: list[tuple[_Claimed, Sent | ChannelError | BaseException | None]] = []
        tripped: set[str] = set()
        for c in claimed:
            ch = c.out.channel
            if ch in self._stopped or ch in tripped or (should_stop is not None and should_stop()):
                outcomes.append((c, None))
                continue
            outcome: Sent | ChannelError | BaseException
            try:
                outcome = self.channel(ch).send(c.out)
            except ChannelError as exc:
                if exc.kind is ErrorKind.AUTH:
                    self._stopped.add(ch)
                    res.auth_errors[ch] = exc
                outcome = exc
            except Exception as exc:  # the outcome is unknown: reconcile, never resend blindly
                outcome = exc
            outcomes.append((c, outcome))
            attempt = _attempt(outcome, c.out.claimed_at)
            if attempt is not None:
                before = self._breakers.get(ch, Breaker())
                after = before.record([attempt])
                self._breakers[ch] = after
                if after.trips > before.trips:
                    tripped.add(ch)  # the rest of this batch keeps its attempts
        return outcomes

    def _record(
        self,
        outcomes: list[tuple[_Claimed, Sent | ChannelError | BaseException | None]],
        now: datetime,
        rng: random.Random,
        res: PassResult,
    ) -> None:
        """Write every outcome of a batch in one transaction."""
        w = store_messages.Writes()
        with self.store.write() as s:
            for c, o in outcomes:
                key = (c.campaign, c.step.name, c.out.channel)
                ev = {"id": c.row_id, "campaign": c.campaign, "step": c.step.name}
                ev |= {"channel": c.out.channel, "to": c.out.to, "lead": c.lead.id}
                if o is None or (isinstance(o, ChannelError) and o.kind is ErrorKind.AUTH):
                    w.set(
                        c.row_id,
                        now,
                        state=PENDING,
                        claimed_by=None,
                        attempts=c.attempts - 1,
                        first_attempt_at=c.first_attempt,
                    )
                elif isinstance(o, Sent):
                    sent = Sent(o.provider_id, o.thread_id or c.out.thread_id)
                    self._mark_sent(w, c.row_id, c.campaign, c.step.name, c.lead, now, now, sent)
                    res.add(*key, "sent")
                    res.events.append({"event": "sent", **ev})
                elif isinstance(o, ChannelError):
                    self._record_error(w, c, o, now, rng, res)
                    ev |= {"error": o.message, "hint": o.hint}
                    res.events.append({"event": o.kind.value, **ev})
                else:
                    w.set(
                        c.row_id,
                        now,
                        state=UNCERTAIN,
                        error=f"{type(o).__name__}: {o}",
                        reason="the channel raised an unexpected error mid-send",
                    )
                    res.add(*key, "uncertain")
                    res.events.append({"event": "uncertain", **ev, "error": str(o)})
            w.flush(s.connection())
            res.tripped |= self._record_breakers(s.connection(), outcomes, now)

    def _record_breakers(
        self,
        conn: Conn,
        outcomes: list[tuple[_Claimed, Sent | ChannelError | BaseException | None]],
        now: datetime,
    ) -> set[str]:
        """Add a batch's outcomes to each channel's stored breaker (inside the record
        transaction, so attempts from every process add up). Returns the channels whose
        breaker tripped from closed."""
        tripped = set()
        per_channel: dict[str, list[Attempt]] = defaultdict(list)
        for c, o in outcomes:
            attempt = _attempt(o, c.out.claimed_at)
            if attempt is not None:
                per_channel[c.out.channel].append(attempt)
        for ch, attempts in per_channel.items():
            before = self.breaker(conn, ch)
            after = before.record(attempts)
            if not (before.quiet() and after.quiet()):
                self._save_breaker(conn, ch, after, now)
            if not before.trips and after.trips:
                tripped.add(ch)
        return tripped

    def _mark_sent(
        self,
        w: store_messages.Writes,
        row_id: int,
        campaign: str,
        step: str,
        lead: _LeadInfo,
        at: datetime,
        now: datetime,
        sent: Sent,
    ) -> None:
        """Record a send at `at` and schedule what follows it."""
        w.set(
            row_id,
            now,
            state=SENT,
            sent_at=at,
            provider_id=sent.provider_id,
            thread_id=sent.thread_id,
            error=None,
            error_code=None,
        )
        self._advance(w, campaign, step, lead, at)

    def _record_error(
        self,
        w: store_messages.Writes,
        c: _Claimed,
        err: ChannelError,
        now: datetime,
        rng: random.Random,
        res: PassResult,
    ) -> None:
        key = (c.campaign, c.step.name, c.out.channel)
        ch_cfg = self.cfg.channels[c.out.channel]
        if err.kind is ErrorKind.TRANSIENT and getattr(err, "maybe_sent", False):
            # A timeout or dropped connection after the request left: the provider may have the
            # message, so the next pass asks it (reconcile) before any retry.
            delay = retry_delay(
                c.attempts,
                ch_cfg.retry_backoff,
                rng,
                err.retry_after,
                give_up_after=ch_cfg.give_up_after,
            )
            w.set(
                c.row_id,
                now,
                state=UNCERTAIN,
                due_at=now + delay,
                error_code=err.code,
                error=err.message,
                reason="the provider may have it: reconciled before any retry",
            )
            res.add(*key, "uncertain")
            res.transient_errors += 1
            return
        first = c.first_attempt or c.out.claimed_at
        if err.kind is ErrorKind.TRANSIENT and not gives_up(ch_cfg, c.attempts, first, now):
            delay = retry_delay(
                c.attempts,
                ch_cfg.retry_backoff,
                rng,
                err.retry_after,
                give_up_after=ch_cfg.give_up_after,
            )
            w.set(
                c.row_id,
                now,
                state=PENDING,
                claimed_by=None,
                due_at=now + delay,
                error_code=err.code,
                error=err.message,
                reason=f"retry {c.attempts + 1} after a transient error (fails at the earliest "
                f"{first + ch_cfg.give_up_after:%Y-%m-%d %H:%M} UTC)",
            )
            res.add(*key, "retry")
            res.transient_errors += 1
            return
        reason = err.hint
        if err.kind is ErrorKind.TRANSIENT:
            reason = f"gave up after {c.attempts} attempts over {now - first}"
        # the hint (e.g. "use a template (content_sid)") says what to change: keep it with the row
        w.set(c.row_id, now, state=FAILED, error_code=err.code, error=err.message, reason=reason)
        res.add(*key, "failed")
        if err.kind is ErrorKind.OPTED_OUT:
            w.optouts.append(
                {
                    "lead_id": c.lead.id,
                    "channel": c.out.channel,
                    "source": "provider",
                    "detail": err.message,
                    "created_at": now,
                }
            )
            self._after_optout(w, c.campaign, c.step.name, c.lead, now)
        else:
            w.end_enrolment(c.campaign, c.lead.id, "stopped", f"step {c.step.name} failed", now)

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
                breaker = self.breaker(conn, ch)
                paused = breaker.paused(now)
                for camp, step, n in rows:
                    res.add(camp, step, ch, "deferred_breaker" if paused else "deferred_limit", n)
                if paused:
                    # not a pacing gap: `send` ends, a daemon wakes for the probe
                    res.paused[ch] = breaker
                    res.next_due = _soonest(res.next_due, breaker.until)
                    continue
                hist = self.history(conn, ch, now)
                slot = self._slot(ch, hist, now, rng)
                res.next_due = _soonest(res.next_due, slot)
                lim = self.limits[ch]
                only_pace = (
                    capacity(Limits(daily=lim.daily, hourly=lim.hourly), hist, now) > 0
                    or slot <= now
                )
                if only_pace:
                    res.pace_until = _soonest(res.pace_until, slot)
            later = store_messages.next_due(conn, now, list(active), names)
            res.next_due = _soonest(res.next_due, later)


def ensure_utc(t: datetime) -> datetime:
    """An aware instant in UTC (naive input is taken as UTC)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)

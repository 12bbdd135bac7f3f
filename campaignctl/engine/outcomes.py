"""Outcomes: hand claimed messages to their channels, record what happened, advance the sequence."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campaignctl import suppression
from campaignctl.breaker import Attempt, Breaker
from campaignctl.channels.base import UNSENDABLE, ChannelError, ErrorKind, Outgoing, Sent
from campaignctl.config import ChannelBase, Step
from campaignctl.engine.context import EngineContext, LeadInfo
from campaignctl.engine.decide import Why
from campaignctl.engine.result import PassResult
from campaignctl.pacing import retry_delay
from campaignctl.store import FAILED, PENDING, SENT, UNCERTAIN, journal, locks
from campaignctl.store import messages as store_messages
from campaignctl.store.conn import Conn, Transaction
from campaignctl.store.journal import Kind

_log = logging.getLogger(__name__)


@dataclass
class Claimed:
    row_id: int
    campaign: str
    step: Step
    index: int
    lead: LeadInfo
    out: Outgoing
    attempts: int
    first_attempt: datetime | None  # before this claim (restored when released unsent)
    trigger_event: int = 0  # a trigger campaign's event (`trigger_event.id`)


def breaker_attempt(outcome: object, at: datetime) -> Attempt | None:
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


class Outcomes(EngineContext):
    """Sends claimed messages and records sent, errors (retry, fail, opt-out) and the next step."""

    def _advance(
        self,
        w: store_messages.Writes,
        campaign: str,
        step_name: str,
        lead: LeadInfo,
        base: datetime,
        event: int = 0,
    ) -> None:
        """After a step is done for a lead: create the next one, or complete the enrolment.
        A trigger campaign's next message is about the same event (`event`); its enrolment
        stays active after the last step, to take the next event."""
        camp = self.cfg.campaigns.get(campaign)
        names = [s.name for s in camp.steps] if camp else []
        if camp is None or step_name not in names or names.index(step_name) + 1 >= len(names):
            if camp is None or camp.kind != "trigger":
                w.end_enrolment(campaign, lead.id, "completed", None, base)
            return
        if camp.kind == "trigger" and not event:
            return
        index = names.index(step_name) + 1
        step = camp.steps[index]
        due = self._due(base, step, lead, self.start_at(camp))
        message = self._new_message(campaign, step, index, lead.id, due, base)
        if event:
            message["trigger_event"] = event
        w.messages.append(message)

    def _after_optout(
        self,
        w: store_messages.Writes,
        campaign: str,
        step: str,
        lead: LeadInfo,
        now: datetime,
        event: int = 0,
    ) -> None:
        camp = self.cfg.campaigns.get(campaign)
        if camp is not None and "optout" in camp.stop_on:
            w.end_enrolment(campaign, lead.id, "stopped", "optout", now)
        else:
            self._advance(w, campaign, step, lead, now, event)

    def _send(
        self,
        claimed: list[Claimed],
        res: PassResult,
        should_stop: Callable[[], bool] | None,
        ends: Callable[[], bool] | None = None,
    ) -> list[tuple[Claimed, Sent | ChannelError | BaseException | None]]:
        """Hand each claimed message to its channel. None means: released unsent: the rest of
        the batch once `should_stop`, or once `ends` says the pass's time is up (after one
        send at least, so that every pass moves on): a batch of slow sends never keeps the
        worker's heartbeat (beaten as the batch is recorded) older than the pass's time and
        one send, whatever the batch's size."""
        outcomes: list[tuple[Claimed, Sent | ChannelError | BaseException | None]] = []
        tripped: set[str] = set()
        cut = False
        for c in claimed:
            ch = c.out.channel
            cut = cut or (should_stop is not None and should_stop())
            cut = cut or (ends is not None and bool(outcomes) and ends())
            if cut or ch in self._stopped or ch in tripped:
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
            attempt = breaker_attempt(outcome, c.out.claimed_at)
            if attempt is not None:
                before = self._breakers.get(ch, Breaker())
                after = before.record([attempt])
                self._breakers[ch] = after
                if after.trips > before.trips:
                    tripped.add(ch)  # the rest of this batch keeps its attempts
        return outcomes

    def _record(
        self,
        outcomes: list[tuple[Claimed, Sent | ChannelError | BaseException | None]],
        now: datetime,
        rng: random.Random,
        res: PassResult,
    ) -> None:
        """Write every outcome of a batch in one transaction."""
        w = store_messages.Writes()
        # beside other daemons' records (each writes its own claimed rows; breakers under the
        # channels' locks), unless a provider's opt-out must be recorded: that path reads then
        # writes opt-outs and sequences as an inbound STOP does, alone
        alone = any(
            isinstance(o, ChannelError) and o.kind is ErrorKind.OPTED_OUT for _, o in outcomes
        )
        with self.store.write(shared=not alone) as s:
            self.beat(s.connection(), now)
            self._lock_breakers(s.connection(), outcomes)
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
                    self._mark_sent(
                        w,
                        c.row_id,
                        c.campaign,
                        c.step.name,
                        c.lead,
                        now,
                        now,
                        sent,
                        c.trigger_event,
                    )
                    res.add(*key, "sent")
                    res.events.append({"event": "sent", **ev})
                    self._hook(w, "sent", c, now)
                elif isinstance(o, ChannelError):
                    self._record_error(s, w, c, o, now, rng, res)
                    ev |= {"error": o.message, "hint": o.hint}
                    res.events.append({"event": o.kind.value, **ev})
                else:
                    reason = "the channel raised an unexpected error mid-send"
                    error = f"{type(o).__name__}: {o}"
                    w.set(c.row_id, now, state=UNCERTAIN, error=error, reason=reason)
                    w.log(self._about(c, Kind.UNCERTAIN, now, None, reason=reason, error=error))
                    res.add(*key, "uncertain")
                    res.events.append({"event": "uncertain", **ev, "error": str(o)})
            w.flush(s.connection())
            res.tripped |= self._record_breakers(s.connection(), outcomes, now)
            # a warming-up channel's first send is recorded once, with the send itself
            for ch in {c.out.channel for c, o in outcomes if isinstance(o, Sent)}:
                self.warm_up(s.connection(), ch, now)
            went = [(c.out.channel, o.provider_id) for c, o in outcomes if isinstance(o, Sent)]
            self._settle_early(s, went, now)

    def _settle_early(self, s: Transaction, sent: list[tuple[str, str]], now: datetime) -> None:
        """Twilio's status callbacks for these (channel, sid) just recorded `sent` (a batch's,
        or reconciled ones) that came before the sid was ours (kept by the webhook,
        `inbound.record_status`): recorded now, in the same transaction. One look-up by the
        sids; nothing at all without a Twilio channel."""
        twilio = {name for name, ch in self.cfg.channels.items() if ch.provider == "twilio"}
        if not twilio:
            return
        sids = [sid for channel, sid in sent if channel in twilio and sid]
        if sids:
            from campaignctl.inbound import settle_early
            from campaignctl.store.conn import savepoint

            try:
                with savepoint(s):
                    settle_early(self.cfg, s, now, provider_ids=sids)
            except Exception as exc:  # the sends' record must stand
                # the kept callbacks are undone alone and stay kept: `sync` records them
                _log.warning(
                    "Twilio callbacks that came before their message was recorded stay kept "
                    "(campaignctl sync records them): %s: %s",
                    type(exc).__name__,
                    exc,
                )

    def _hook(self, w: store_messages.Writes, event: str, c: Claimed, now: datetime) -> None:
        """Queue the outgoing hooks' rows for `event` of `c`, with the outcome (durable: the
        same transaction)."""
        if self.cfg.hooks:
            from campaignctl.hooks import rows_for

            w.hooks.extend(
                rows_for(
                    self.cfg,
                    event,
                    lead_id=c.lead.id,
                    message_id=c.row_id,
                    occurred_at=now,
                    now=now,
                )
            )

    @staticmethod
    def _about(
        c: Claimed, kind: Kind, now: datetime, code: str | None, **detail: Any
    ) -> dict[str, Any]:
        """A journal row about claimed message `c`."""
        return journal.entry(
            kind,
            now,
            detail,
            lead_id=c.lead.id,
            campaign=c.campaign,
            step=c.step.name,
            message_id=c.row_id,
            channel=c.out.channel,
            code=code,
            source="engine",
        )

    def _lock_breakers(
        self,
        conn: Conn,
        outcomes: list[tuple[Claimed, Sent | ChannelError | BaseException | None]],
    ) -> None:
        """Before anything is written: the lock of each channel whose stored breaker this batch
        may change (a failed attempt, or a breaker that is not quiet), so two processes
        recording at once add up their attempts instead of one overwriting the other's."""
        failing: set[str] = set()
        tried: set[str] = set()
        for c, o in outcomes:
            attempt = breaker_attempt(o, c.out.claimed_at)
            if attempt is not None:
                tried.add(c.out.channel)
                if not attempt.ok:
                    failing.add(c.out.channel)
        shared = [ch for ch in tried if ch in failing or not self.breaker(conn, ch).quiet()]
        locks.hold(conn, map(locks.channel, shared))

    def _record_breakers(
        self,
        conn: Conn,
        outcomes: list[tuple[Claimed, Sent | ChannelError | BaseException | None]],
        now: datetime,
    ) -> set[str]:
        """Add a batch's outcomes to each channel's stored breaker (inside the record
        transaction, so attempts from every process add up). Returns the channels whose
        breaker tripped from closed."""
        tripped = set()
        per_channel: dict[str, list[Attempt]] = defaultdict(list)
        for c, o in outcomes:
            attempt = breaker_attempt(o, c.out.claimed_at)
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
        lead: LeadInfo,
        at: datetime,
        now: datetime,
        sent: Sent,
        event: int = 0,
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
        self._advance(w, campaign, step, lead, at, event)

    def _record_error(
        self,
        s: Transaction,
        w: store_messages.Writes,
        c: Claimed,
        err: ChannelError,
        now: datetime,
        rng: random.Random,
        res: PassResult,
    ) -> None:
        key = (c.campaign, c.step.name, c.out.channel)
        ch_cfg = self.cfg.channels[c.out.channel]

        def retry_at() -> datetime:
            # drawn only where a retry is scheduled: the rng's sequence stays as it was
            give_up = ch_cfg.give_up_after
            delay = retry_delay(
                c.attempts, ch_cfg.retry_backoff, rng, err.retry_after, give_up_after=give_up
            )
            return now + delay

        if err.kind is ErrorKind.TRANSIENT and getattr(err, "maybe_sent", False):
            # A timeout or dropped connection after the request left: the provider may have the
            # message, so the next pass asks it (reconcile) before any retry.
            maybe = "the provider may have it: reconciled before any retry"
            w.set(
                c.row_id,
                now,
                state=UNCERTAIN,
                due_at=retry_at(),
                error_code=err.code,
                error=err.message,
                reason=maybe,
            )
            w.log(self._about(c, Kind.UNCERTAIN, now, err.code, reason=maybe, error=err.message))
            res.add(*key, "uncertain")
            res.transient_errors += 1
            return
        first = c.first_attempt or c.out.claimed_at
        if err.kind is ErrorKind.TRANSIENT and not gives_up(ch_cfg, c.attempts, first, now):
            until = retry_at()
            retry = (
                f"retry {c.attempts + 1} after a transient error (fails at the earliest "
                f"{first + ch_cfg.give_up_after:%Y-%m-%d %H:%M} UTC)"
            )
            w.set(
                c.row_id,
                now,
                state=PENDING,
                claimed_by=None,
                due_at=until,
                error_code=err.code,
                error=err.message,
                reason_code=Why.BACKOFF,
                reason=retry,
            )
            w.log(
                self._about(
                    c,
                    Kind.RETRY,
                    now,
                    err.code,
                    until=until.isoformat(),
                    error=err.message,
                    attempt=c.attempts,
                    reason=retry,
                )
            )
            res.add(*key, "retry")
            res.transient_errors += 1
            return
        reason: str | None = err.hint
        if err.kind is ErrorKind.TRANSIENT:
            reason = f"gave up after {c.attempts} attempts over {now - first}"
        # the hint (e.g. "use a template (content_sid)") says what to change: keep it with the row
        w.set(c.row_id, now, state=FAILED, error_code=err.code, error=err.message, reason=reason)
        res.add(*key, "failed")
        self._hook(w, "failed", c, now)
        if err.kind is ErrorKind.OPTED_OUT:  # the rule an inbound STOP follows too
            # what this batch queued for the lead lands first, as it would before a STOP
            w.flush(s.connection())
            stop_on = suppression.stop_on_of(self.cfg)
            ch, msg = c.out.channel, err.message
            suppression.opt_out_in(
                s, c.lead.id, ch, source="provider", detail=msg, now=now, stop_on=stop_on
            )
            self._after_optout(w, c.campaign, c.step.name, c.lead, now, c.trigger_event)
        else:
            w.end_enrolment(c.campaign, c.lead.id, "stopped", f"step {c.step.name} failed", now)

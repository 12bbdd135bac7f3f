"""Claim: due messages taken for sending within every channel's limits, each one decided."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from campaignctl.attachments import records
from campaignctl.channels.base import ChannelError, Outgoing
from campaignctl.config import Campaign
from campaignctl.engine.ab import AbTests, ab_states, ab_steps
from campaignctl.engine.context import LeadInfo, by_priority, full_name
from campaignctl.engine.decide import (
    ACTIVE,
    AbState,
    Defer,
    Hold,
    Send,
    Skip,
    Why,
    channel_hold,
    decide,
)
from campaignctl.engine.outcomes import Claimed, Outcomes
from campaignctl.engine.result import PassResult
from campaignctl.pacing import capacity
from campaignctl.store import FAILED, SENDING, SKIPPED, journal, locks
from campaignctl.store import leads as store_leads
from campaignctl.store import messages as store_messages
from campaignctl.store import triggers as store_triggers
from campaignctl.store.conn import Conn
from campaignctl.store.journal import Kind
from campaignctl.suppression import NOT_SUPPRESSED, suppressed_addresses


class Claims(Outcomes, AbTests):
    """Claims due messages within each channel's limits and breaker, in one transaction."""

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
    ) -> list[Claimed]:
        """Claim up to `want` due messages, within every channel's limits, in one transaction."""
        active = self.active_campaigns()
        if not active:
            return []
        claimed: list[Claimed] = []
        # beside other daemons' claims: rows are taken with SKIP LOCKED, limits under the
        # channels' locks (`_lock_shared`)
        with self.store.write(shared=True) as s:
            conn = s.connection()
            self.beat(conn, now)
            channels = by_priority(self.channel_names(), active)
            self._lock_shared(conn, channels, now)
            for ch in channels:
                room = want - len(claimed)
                if room <= 0:
                    break
                self.warm_up(conn, ch, now)
                breaker = self.breaker(conn, ch)
                gate = breaker.gate(now)
                hist = [] if gate == 0 else self.history(conn, ch, now)
                hold = channel_hold(self.limits[ch], hist, breaker, now)
                self._note_hold(conn, ch, hold, now)
                if hold is not None:
                    continue  # paused or used up: the messages keep their attempts
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

    def _lock_shared(self, conn: Conn, channels: list[str], now: datetime) -> None:
        """Take the lock of each channel whose claim must see every other process's: one with
        a daily or hourly limit or pacing (counted and reserved together, exactly, whichever
        daemon claims) and one whose circuit breaker is not closed (one probe between them).
        Taken at the start of the claim transaction, all at once in one order, and held to its
        commit; the history is read after it, so it holds every claim committed before. Other
        channels take no lock: their claims skip each other's rows (`claimable`). With
        `settings.max_per_lead`, a lead's sends on every channel count, so every claim takes
        the frequency cap's lock too."""
        shared = [
            locks.channel(ch)
            for ch in channels
            if self.limits[ch].counted or self.breaker(conn, ch).gate(now) is not None
        ]
        if self.cap:
            shared.append(locks.FREQUENCY_CAP)
        locks.hold(conn, shared)

    @staticmethod
    def _note_hold(conn: Conn, ch: str, hold: Hold | None, now: datetime) -> None:
        """Journal a channel's hold and its release when they change (once, not every pass): the
        journal's last row for the channel is the state compared with."""
        why = None if hold is None else str(hold.why)
        if journal.current_hold(conn, ch) == why:
            return
        if hold is None:
            entry = journal.entry(Kind.CHANNEL_RELEASED, now, channel=ch, source="engine")
        else:
            until = hold.until.isoformat() if hold.until else None
            detail = {"until": until, "reason": hold.reason}
            entry = journal.entry(
                Kind.CHANNEL_HELD, now, detail, channel=ch, code=why, source="engine"
            )
        journal.add(conn, [entry])

    def _claim_channel(
        self,
        conn: Conn,
        ch: str,
        cap: int,
        now: datetime,
        active: dict[str, Campaign],
        res: PassResult,
    ) -> list[Claimed]:
        """Claim up to `cap` due messages on `ch`: each candidate is decided, then skipped,
        deferred or rendered and marked `sending`."""
        from campaignctl.render import RenderError

        out: list[Claimed] = []
        index = {c: {st.name: i for i, st in enumerate(camp.steps)} for c, camp in active.items()}
        tests = ab_steps(active)
        ab = ab_states(conn, tests)
        w = store_messages.Writes()
        while len(out) < cap:
            w.flush(conn)
            rows = self._candidates(conn, ch, now, active, cap - len(out) + 20)
            if not rows or not self._opened(ch, res):
                break
            ids = [r.lead_id for r in rows]
            leads = self._leads(conn, ids)
            optouts = store_leads.optouts_of(conn, ids)
            # in this transaction: an address suppressed since enrolment is seen here
            suppressed = suppressed_addresses(
                conn, [(i.id, i.email, i.phone) for i in leads.values()]
            )
            states = store_leads.enrolment_states(conn, ids)
            # the frequency cap: each candidate's sends in the window, on every channel (those
            # claimed earlier in this transaction included: they are flushed, or added below)
            per_lead = self.cap
            recent = store_messages.lead_sends(conn, ids, now - per_lead.span) if per_lead else {}
            kind = self.cfg.channel_kind(ch)
            for r in rows:
                if len(out) >= cap:
                    break
                lead = leads.get(r.lead_id)
                key = (r.campaign, r.step)
                test = ab.get(key)
                decision = decide(
                    r.campaign,
                    active[r.campaign],
                    r.step,
                    ch,
                    kind,
                    lead,
                    optouts[r.lead_id],
                    states.get((r.campaign, r.lead_id), ACTIVE),
                    self.hours[ch],
                    now,
                    suppressed=suppressed.get(r.lead_id, NOT_SUPPRESSED),
                    ab=test,
                    cap=per_lead,
                    recent=recent.get(r.lead_id, ()),
                )
                # the test starts with its step's first message past the window and address
                starts = isinstance(decision, Send) or decision.why is Why.AB_WAIT
                if test is not None and test == AbState() and starts:
                    ab[key] = self._ab_start(conn, key, tests[key], now)
                if not isinstance(decision, Send):
                    self._hold(w, r, ch, lead, decision, now, res)
                    continue
                assert lead is not None
                step = index[r.campaign][r.step]
                try:
                    out.append(self._claim_one(conn, w, r, ch, kind, step, lead, decision, now))
                except RenderError as exc:
                    self._render_failed(w, r, ch, lead, decision.address, exc.message, now, res)
                else:
                    if per_lead:  # the next candidate of this lead in the batch counts this one
                        recent.setdefault(r.lead_id, []).append(now)
        w.flush(conn)
        return out

    def _opened(self, ch: str, res: PassResult) -> bool:
        """Open the channel (credentials read) before anything is claimed for it."""
        try:
            self.channel(ch)
        except ChannelError as exc:
            res.auth_errors[ch] = exc
            self._stopped.add(ch)
            return False
        return True

    def _hold(
        self,
        w: store_messages.Writes,
        r: Any,
        ch: str,
        lead: LeadInfo | None,
        decision: Skip | Defer,
        now: datetime,
        res: PassResult,
    ) -> None:
        """Record a skip (and what follows it for the lead) or a deferral, with its reason."""
        if isinstance(decision, Defer):
            w.set(
                r.id, now, due_at=decision.until, reason=decision.reason, reason_code=decision.why
            )
            w.log(
                journal.entry(
                    Kind.DEFERRED,
                    now,
                    {
                        "until": decision.until.isoformat(),
                        "was_due": r.due_at.isoformat(),
                        "reason": decision.reason,
                    },
                    lead_id=r.lead_id,
                    campaign=r.campaign,
                    step=r.step,
                    message_id=r.id,
                    channel=ch,
                    code=decision.why,
                    source="engine",
                )
            )
            res.add(r.campaign, r.step, ch, f"deferred_{decision.why}")
            return
        w.set(r.id, now, state=SKIPPED, reason=decision.reason, reason_code=decision.why)
        res.add(r.campaign, r.step, ch, "skipped")
        if lead is None:
            return
        if decision.why is Why.OPTED_OUT:
            self._after_optout(w, r.campaign, r.step, lead, now, r.trigger_event)
        elif decision.next_step_follows(self.cfg.campaigns[r.campaign]):
            self._advance(w, r.campaign, r.step, lead, now, r.trigger_event)

    def _claim_one(
        self,
        conn: Conn,
        w: store_messages.Writes,
        r: Any,
        ch: str,
        kind: str,
        index: int,
        lead: LeadInfo,
        decision: Send,
        now: datetime,
    ) -> Claimed:
        """Render the message as decided and mark it `sending` (a RenderError marks nothing)."""
        step = self.cfg.campaigns[r.campaign].steps[index]
        to = decision.address
        item = None
        if r.trigger_event > 0:  # a trigger campaign's message: its event is `item`
            item = store_triggers.data_of(conn, [r.trigger_event]).get(r.trigger_event, {})
        rendered = self.renderer.render(
            r.campaign,
            index,
            step,
            lead.context,
            lead_key=lead.id,
            variant_name=decision.variant,
            item=item,
        )
        rendered = self.tracked(r.id, rendered)  # the message's id signs its tracked links
        subject = rendered.subject
        in_reply_to = thread_id = mid = None
        if kind == "email":
            from campaignctl.channels.mime import new_message_id, reply_subject

            if step.thread:
                in_reply_to, thread_id, first_subject = self._thread(conn, r.campaign, lead)
                if in_reply_to is not None:
                    subject = reply_subject(first_subject)
            mid = new_message_id(self.cfg.sender.email)
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
            # what reconcile matches on (an email's Message-ID is enough) and threading reads
            subject=subject,
            body=rendered.text if kind != "email" else None,
            content_sid=rendered.content_sid,
            attachments=records(rendered.attachments),
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
            to_name=full_name(lead.context),
            unsubscribe_url=rendered.unsubscribe_url,
            attachments=rendered.attachments,
        )
        return Claimed(
            r.id,
            r.campaign,
            step,
            index,
            lead,
            msg,
            r.attempts + 1,
            r.first_attempt_at,
            r.trigger_event,
        )

    def _render_failed(
        self,
        w: store_messages.Writes,
        r: Any,
        ch: str,
        lead: LeadInfo,
        to: str,
        error: str,
        now: datetime,
        res: PassResult,
    ) -> None:
        """A message that cannot be rendered fails, and the lead's sequence stops."""
        w.set(r.id, now, state=FAILED, error_code="render", error=error)
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
                "error": error,
            }
        )

    def _thread(
        self, conn: Conn, campaign: str, lead: LeadInfo
    ) -> tuple[str | None, str | None, str | None]:
        """The Message-ID, thread id and subject of the campaign's first email sent to `lead`."""
        camp = self.cfg.campaigns[campaign]
        for i, st in enumerate(camp.steps):
            if self.cfg.channel_kind(st.channel) != "email":
                continue
            row = store_messages.sent_thread(conn, campaign, st.name, lead.id)
            if row is None or not row.message_id:
                continue
            if row.subject is not None:  # recorded when it was claimed
                return row.message_id, row.thread_id, row.subject
            first = self.renderer.render(campaign, i, st, lead.context, lead_key=lead.id)
            return row.message_id, row.thread_id, first.subject
        return None, None, None

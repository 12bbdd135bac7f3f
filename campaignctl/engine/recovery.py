"""Recovery: archived campaigns' messages, dead claims and reconciliation of uncertain sends."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from campaignctl.channels.base import (
    BatchReconciler,
    ChannelError,
    ErrorKind,
    Outgoing,
    Reconciled,
    Reconciliation,
    Sent,
)
from campaignctl.engine.context import LeadInfo, worker_alive, worker_host
from campaignctl.engine.decide import Why
from campaignctl.engine.outcomes import Outcomes, gives_up
from campaignctl.engine.result import PassResult
from campaignctl.store import FAILED, PENDING, journal, locks, workers
from campaignctl.store import messages as store_messages
from campaignctl.store.journal import Kind

#: A worker whose heartbeat is older than this is dead: another worker recovers its claims.
#: A worker beats in every claim and record transaction (and the daemon after every tick),
#: and a pass ends after the send that reaches `runner.PASS_TIME` (a minute), so a live
#: worker's heartbeat is at most a minute and one send (bounded by its channel's time-out) old.
WORKER_TIMEOUT = timedelta(minutes=5)
#: A `sending` row claimed on another host by a worker without a row in `worker` (one that
#: stopped, or a campaignctl before issue 16) is judged abandoned after this long.
FOREIGN_CLAIM_TIMEOUT = timedelta(hours=1)
#: Uncertain messages settled per pass: by a channel that answers for many with one request,
#: by one asked message by message; one it could not settle is asked again this much later.
RECONCILE_BATCH = 500
RECONCILE_SINGLE = 20
RECONCILE_AGAIN = timedelta(minutes=1)


class Recovery(Outcomes):
    """Settles what earlier passes left: archived campaigns, dead claims, uncertain sends."""

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
            store_messages.skip_pending(
                s, archived, "campaign archived", now, Why.CAMPAIGN_ARCHIVED
            )

    def _recover(self, now: datetime) -> None:
        """A `sending` row whose process is gone becomes `uncertain` (no blind resend): ours
        from a pass that died half way, a process of this host that no longer runs, or a worker
        whose heartbeat is older than `WORKER_TIMEOUT` (on any host). Dead workers' rows go."""
        with self.store.read() as s:
            rows = store_messages.sending(s)
            dead = set(workers.stale(s, now - WORKER_TIMEOUT))
            beats = workers.heartbeats(s, [r.claimed_by for r in rows if r.claimed_by])
        stale = [r.id for r in rows if self._abandoned(r, beats, now)]
        dead |= {r.claimed_by for r in rows if r.id in set(stale) and r.claimed_by in beats}
        dead.discard(self.worker)
        if not stale and not dead:
            return
        with self.store.write() as s:
            locks.hold(s, [locks.RECOVERY])  # one process journals each recovered claim
            if stale:
                store_messages.mark_uncertain(
                    s, stale, "the sending process stopped before recording the outcome", now
                )
            workers.remove(s, sorted(dead))

    def _abandoned(self, r: Any, beats: dict[str, datetime], now: datetime) -> bool:
        """Whether the process that claimed `sending` row `r` is gone."""
        if r.claimed_by == self.worker:
            return True  # ours from a pass that died half way
        alive = worker_alive(r.claimed_by or "")
        if alive is not None:
            return not alive  # a process of this host: its pid says
        beat = beats.get(r.claimed_by or "")
        if beat is not None:
            return now - beat > WORKER_TIMEOUT
        return r.claimed_at is not None and now - r.claimed_at > FOREIGN_CLAIM_TIMEOUT

    def abandon_claims(self, now: datetime) -> None:
        """This worker stops: its `sending` claims (a pass interrupted mid-send) become
        `uncertain` for whichever worker reconciles next, and its row goes."""
        with self.store.write() as s:
            locks.hold(s, [locks.RECOVERY])
            mine = [r.id for r in store_messages.sending(s) if r.claimed_by == self.worker]
            if mine:
                store_messages.mark_uncertain(
                    s, mine, "the sending process stopped before recording the outcome", now
                )
            workers.remove(s, [self.worker])

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
        here = worker_host(self.worker)
        for r in rows:
            last = self._asked.get(r.id)
            if (
                r.lead_id not in leads
                or (last is not None and now - last < RECONCILE_AGAIN)
                or (self._host_local(r.channel) and worker_host(r.claimed_by or "") != here)
            ):
                res.add(r.campaign, r.step, r.channel, "uncertain")
            else:
                by_channel[r.channel].append(r)
        for ch, todo in by_channel.items():
            answers, asked = self._ask(ch, todo, leads, now, res)
            with self.store.write() as s:
                conn = s.connection()
                # another process may have settled one meanwhile (and it may be claimed again)
                still = store_messages.still_uncertain(conn, [r.id for r in todo])
                w = store_messages.Writes()
                found: list[tuple[str, str]] = []  # (channel, sid) the provider has
                for r in todo:
                    answer = answers.get(r.id)
                    if r.id not in still:
                        continue
                    if answer is None or answer.outcome is Reconciled.UNKNOWN:
                        if r.id in asked:
                            self._asked[r.id] = now
                        res.add(r.campaign, r.step, r.channel, "uncertain")
                    else:
                        self._settle(w, r, leads[r.lead_id], answer, now, res)
                        if answer.outcome is Reconciled.SENT and answer.provider_id:
                            found.append((r.channel, answer.provider_id))
                w.flush(conn)
                # the callbacks Twilio sent while the message was uncertain (sid not ours yet)
                self._settle_early(s, found, now)

    def _host_local(self, ch: str) -> bool:
        """Whether only this host can tell what `ch` sent (an outbox's folder is on a disk of
        its own): its uncertain messages are reconciled by a worker of the claiming host."""
        try:
            return bool(getattr(self.channel(ch), "host_local", False))
        except Exception:  # a channel that cannot open: `_ask` reports it
            return False

    def _ask(
        self, ch: str, rows: list[Any], leads: dict[int, LeadInfo], now: datetime, res: PassResult
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
        lead: LeadInfo,
        answer: Reconciliation,
        now: datetime,
        res: PassResult,
    ) -> None:
        """Record what the provider said about an uncertain message."""

        def log(code: str, reason: str) -> None:
            detail: dict[str, Any] = {"reason": reason, "provider_id": answer.provider_id}
            if r.attachments:  # how many files the claim attached (their names are the row's)
                detail["attachments"] = len(r.attachments)
            w.log(
                journal.entry(
                    Kind.RECONCILED,
                    now,
                    detail,
                    lead_id=r.lead_id,
                    campaign=r.campaign,
                    step=r.step,
                    message_id=r.id,
                    channel=r.channel,
                    code=code,
                    source="engine",
                )
            )

        if answer.outcome is Reconciled.SENT:
            log("sent", "the provider has it")
            at = r.claimed_at or now
            sent = Sent(answer.provider_id or "", answer.thread_id or r.thread_id)
            self._mark_sent(w, r.id, r.campaign, r.step, lead, at, now, sent, r.trigger_event)
            w.set(r.id, now, reason="reconciled: the provider has it")
            res.events.append({"event": "reconciled", "id": r.id, "outcome": "sent"})
            return
        ch_cfg = self.cfg.channels[r.channel]
        first = r.first_attempt_at or r.claimed_at or now
        if gives_up(ch_cfg, r.attempts, first, now):
            reason = f"never got it, after {r.attempts} attempt(s)"
            w.set(r.id, now, state=FAILED, reason=f"reconciled: {reason}")
            log("failed", reason)
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
            log("pending", "the provider never got it: sent again when due")
        res.events.append({"event": "reconciled", "id": r.id, "outcome": "not_sent"})

    def _lost(self, r: Any, lead: LeadInfo, now: datetime) -> Outgoing:
        """The uncertain message as it was handed to its channel, for `reconcile`.

        The claim recorded what it handed over (subject, text, template), so a channel that
        matches by body (Twilio) matches what was sent, even when the step was edited since.
        A row claimed before that was recorded is rendered again (the variant is chosen by
        lead, so it is the same); when it cannot be rendered the text stays empty and the
        channel answers that it cannot tell.
        """
        from campaignctl.render import RenderError

        content: dict[str, Any] = {"text": ""}
        camp = self.cfg.campaigns.get(r.campaign)
        names = [st.name for st in camp.steps] if camp is not None else []
        if r.body is not None:
            content = {"text": r.body, "subject": r.subject, "content_sid": r.content_sid}
        elif camp is not None and r.step in names:
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

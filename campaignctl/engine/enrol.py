"""Enrolment: matching leads join a campaign with their first message; blasts complete."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from campaignctl.audience import (
    AudienceError,
    compile_audience,
    condition,
    fields_read,
    loads,
    row_context,
)
from campaignctl.config import Campaign, Step
from campaignctl.engine.context import EngineContext, LeadInfo
from campaignctl.engine.result import PassResult
from campaignctl.lead_events import JOURNAL_KINDS, enrol_on_event
from campaignctl.lead_events import matches as lead_event_matches
from campaignctl.pacing import due_after, zone
from campaignctl.store import enrolment as store_enrolment
from campaignctl.store import journal, locks, meta
from campaignctl.store import leads as store_leads
from campaignctl.store import triggers as store_triggers
from campaignctl.store.conn import Conn

if TYPE_CHECKING:
    from campaignctl.trigger import TriggerResult

# ---------------------------------------------------------------- audiences

#: Leads whose audience Python decides per read and write (`_settle_picks`).
SETTLE_BATCH = 5000


class AudienceMatcher:
    """`compile_audience`, remembered per distinct value of the fields the expression reads.

    `status == 'new' and 'buyer' in tags` reads only `status` and `tags` (and
    `lead.budget_max|int > 5` only `budget_max`: `audience.fields_read`), so 100,000 leads need
    a handful of evaluations. An expression that reads `lead` as a whole (`lead|length`) is
    evaluated for every lead; `fields` is then None.

    A lead the expression cannot be evaluated for (`lead.budget|int` on a lead without a
    budget) does not match: it is counted in `failures`, with the first error in `reason`, so
    one lead's data never stops a campaign (or the others).
    """

    _MISSING = object()

    def __init__(self, expr: str | None, where: str) -> None:
        self._matches = compile_audience(expr, where)
        self.fields: frozenset[str] | None = fields_read(expr)
        self._names = sorted(self.fields or ())
        self._seen: dict[tuple[Any, ...], bool | str] = {}
        self.failures = 0
        self.reason: str | None = None
        # the rows of `store.enrolment.unsure`: what to read of each for its key (`row_key`)
        self._row_seen: dict[tuple[Any, ...], bool | str] = {}
        self._row_fields: list[tuple[int, str]] | None = None
        if self.fields is not None and "id" not in self.fields:
            self._row_fields = [(_ROW_COLUMNS.get(n, -1), n) for n in self._names]

    def _evaluate(self, lead: Mapping[str, Any]) -> bool | str:
        """True or False, or the error message when the expression fails on this lead."""
        try:
            return self._matches(lead)
        except AudienceError as exc:
            return exc.message

    def __call__(self, lead: Mapping[str, Any]) -> bool:
        answer = self.verdict(lead)
        return answer if isinstance(answer, bool) else False

    def verdict(self, lead: Mapping[str, Any]) -> bool | str:
        """True or False, or why the expression cannot be evaluated on this lead (counted in
        `failures`, the first in `reason`)."""
        if self.fields is None:
            answer = self._evaluate(lead)
        else:
            try:
                key = tuple(_typed(lead.get(n, self._MISSING)) for n in self._names)
            except TypeError:
                answer = self._evaluate(lead)
            else:
                if key in self._seen:
                    answer = self._seen[key]
                else:
                    answer = self._evaluate(lead)
                    if len(self._seen) < ROW_MEMO:
                        self._seen[key] = answer
        if isinstance(answer, str):
            self.failures += 1
            self.reason = self.reason or answer
        return answer

    def row_verdict(self, row: Any) -> bool | str:
        """`verdict` of a row of `store.enrolment.unsure` (JSON text decoded only as the
        expression needs it): remembered per distinct value of the fields it reads, as the
        row holds them, so a million rows with a few dozen distinct values need a few dozen
        evaluations (at most `ROW_MEMO` remembered)."""
        key = self.row_key(row)
        if key is None:
            answer = self._evaluate(row_context(row))
        else:
            known = self._row_seen.get(key)
            if known is None:
                known = self._evaluate(row_context(row))
                if len(self._row_seen) < ROW_MEMO:
                    self._row_seen[key] = known
            answer = known
        if isinstance(answer, str):
            self.failures += 1
            self.reason = self.reason or answer
        return answer

    def row_key(self, row: Any) -> tuple[Any, ...] | None:
        """What of the row the expression reads, typed (`1`, `1.0` and `true` differ), or None
        when it reads the lead as a whole or its id (every lead is its own key)."""
        if self._row_fields is None:
            return None
        missing = self._MISSING
        attrs: dict[str, Any] | None = None
        key: list[Any] = []
        for index, name in self._row_fields:
            if index == _TAGS_ROW:
                key.append(row[7] or "[]")  # the JSON text: equal texts, equal tags
                continue
            value = row[index] if index >= 0 else None
            if value is None or value == "":
                # as `lead_context`: an attribute stands in for an unset fixed field
                if attrs is None:
                    attrs = loads(row[8]) if row[8] else {}
                value = attrs.get(name)
                if value is None or value == "":
                    value = missing
            key.append(_typed(value))
        return tuple(key)


#: The most distinct keys `AudienceMatcher.row_verdict` remembers (then it evaluates the rest).
ROW_MEMO = 50_000
#: Where a row of `store.enrolment.unsure` holds each field (attributes: in `attrs`, index 8).
_ROW_COLUMNS = {
    "email": 1,
    "phone": 2,
    "first_name": 3,
    "last_name": 4,
    "timezone": 5,
    "status": 6,
    "tags": 7,
}
_TAGS_ROW = 7


def _typed(value: Any) -> Any:
    """A value as a key that tells apart what compares equal but prints differently (`1`,
    `1.0`, `true`); lists and objects as tuples."""
    kind = type(value)
    if kind is str or kind is int:
        return value
    if isinstance(value, list | tuple):
        return ("list", tuple(_typed(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _typed(v)) for k, v in value.items())))
    hash(value)  # TypeError for anything else unhashable: the caller evaluates instead
    return (kind.__name__, value)


class Enrolment(EngineContext):
    """Enrols leads (sequences on every pass, a blast once) and completes blasts."""

    def enrol(self, now: datetime, res: PassResult | None = None) -> int:
        """Enrol matching leads: sequences on every pass, a blast once (at `start_at`).

        Leads an audience cannot be evaluated for are left out, counted in
        `res.audience_skipped` and in `meta` (`audience.NAME.skipped`, which `status` shows).
        """
        total = 0
        for name, camp in self.active_campaigns().items():
            if camp.kind == "trigger":  # enrols on `campaignctl trigger` events only
                continue
            if camp.enrol_on:  # enrols on lead events from the journal only
                total += self._enrol_on_events(name, camp, now, res)
                continue
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
        ids: list[int] | None = None,
        cursor: int | None = None,
        runs: dict[int, tuple[int, datetime]] | None = None,
        read_from: int | None = None,
    ) -> int:
        """Enrol one campaign's matching leads in one transaction: picked in SQL where the
        audience translates (`store.audience_sql`), the rest evaluated here. A lead the audience
        fails on is skipped; the first failure per lead and campaign is journalled. `ids`: only
        these leads (an `enrol_on` campaign's), and `cursor` its journal position to keep.
        `runs` (a `reenrol` campaign's): lead -> the journal row of its enrolling event and when
        it was recorded; those whose enrolment ended before it are enrolled again, in the same
        transaction; `read_from`: the cursor those events were read after.

        Guarded in the database, not in memory: the transaction first takes the campaign's
        enrolment lock (`store.locks`), then looks again at what another process may have done
        meanwhile: a blast enrolled, an `enrol_on` cursor moved (then this one enrols nobody;
        the next pass reads on from the new cursor)."""
        matches = AudienceMatcher(camp.audience, f"campaigns.{name}.audience")
        cond = condition(camp.audience)
        first = camp.steps[0]
        errors: dict[int, str] = {}
        with self.store.write() as s:
            conn = s.connection()
            locks.hold(conn, [locks.enrolment(name)])
            if camp.kind == "blast" and meta.blast_enrolled(conn, name) is not None:
                return 0  # another process enrolled it: a blast enrols once
            if read_from is not None and meta.enrol_on_cursor(conn, name) != read_from:
                return 0  # another process read these events
            if cursor is not None:
                meta.set_enrol_on_cursor(conn, name, cursor, now)
            if ids is not None and not ids:
                count = 0
            else:
                # An audience SQL cannot read at all (Opaque) picks every candidate as unsure:
                # Python decides them a batch at a time, and the enrolment is set-based still.
                store_enrolment.pick(conn, name, [first.channel, "*"], cond, ids=ids)
                self._settle_picks(conn, matches, errors)
                count = self._enrol_picked(conn, name, first, now, start)
            if runs:
                count += self._reenrol(conn, name, first, matches, now, start, runs, errors)
            self._journal_errors(conn, name, errors, now)
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
        return count

    def _enrol_picked(
        self,
        conn: Conn,
        name: str,
        first: Step,
        now: datetime,
        start: datetime | None,
        event: int = 0,
    ) -> int:
        """Enrol the picked leads with one INSERT ... SELECT; their first message too when its
        due time is the same for every lead (an always-open channel), else one per lead.
        `event`: a trigger event's row id, carried by each message."""
        hours = self.hours[first.channel]
        enrol = store_enrolment.enrol_picked_event if event else store_enrolment.enrol_picked
        if hours.always:
            due = due_after(now, first.delay, hours, UTC, start)
            message = self._new_message(name, first, 0, 0, due, now)
            del message["lead_id"]
            if event:
                message["trigger_event"] = event
            return enrol(conn, name, now, message)
        count = enrol(conn, name, now)
        # The due time depends on the lead's zone only: one per time zone name the leads hold
        # (a handful), computed here and joined in SQL; a lead without a valid one (its zone
        # is its phone number's, or the default) gets its own, noted a batch at a time.
        dues: dict[ZoneInfo, datetime] = {}

        def due_in(tz: ZoneInfo) -> datetime:
            if tz not in dues:
                dues[tz] = due_after(now, first.delay, hours, tz, start)
            return dues[tz]

        named = {
            tz_name: due_in(tz)
            for tz_name in store_enrolment.picked_timezones(conn)
            if tz_name and (tz := zone(tz_name)) is not None
        }
        for rows in store_enrolment.picked_outside(conn, sorted(named)):
            store_enrolment.note_dues(
                conn,
                [
                    (
                        lead_id,
                        due_in(LeadInfo(lead_id, None, phone, tz_name, self.default_tz, {}).tz),
                    )
                    for lead_id, tz_name, phone in rows
                ],
            )
        message = self._new_message(name, first, 0, 0, now, now)
        del message["lead_id"], message["due_at"]
        if event:
            message["trigger_event"] = event
        store_enrolment.add_picked_messages(conn, message, named)
        return count

    def _reenrol(
        self,
        conn: Conn,
        name: str,
        first: Step,
        matches: AudienceMatcher,
        now: datetime,
        start: datetime | None,
        runs: dict[int, tuple[int, datetime]],
        errors: dict[int, str],
    ) -> int:
        """`reenrol = true`: the leads in `runs` whose enrolment ended start the sequence again
        when the audience still matches, as an enrolment would (not erased, not opted out of the
        first step's channel). The new run's messages carry the enrolling journal row's id,
        negated, in `trigger_event`: the message key (campaign, step, lead, trigger_event) keeps
        each run's messages apart, and each still goes at most once."""
        # only an event after the enrolment ended starts it again: one recorded while the lead
        # was still in the sequence (or before it stopped it) does not
        ended = [
            lead_id
            for lead_id, ended_at in store_enrolment.ended_of(conn, name, sorted(runs)).items()
            if runs[lead_id][1] > ended_at
        ]
        if not ended:
            return 0
        leads = self._leads(conn, ended)
        optouts = store_leads.optouts_of(conn, ended)
        again: list[int] = []
        messages: list[dict[str, Any]] = []
        for lead_id in ended:
            lead = leads.get(lead_id)
            if lead is None or not (lead.email or lead.phone):
                continue  # erased
            if optouts[lead_id] & {first.channel, "*"}:
                continue
            answer = matches.verdict(lead.context)
            if isinstance(answer, str):
                errors[lead_id] = answer
            if answer is not True:
                continue
            again.append(lead_id)
            message = self._new_message(
                name, first, 0, lead_id, self._due(now, first, lead, start), now
            )
            message["trigger_event"] = -runs[lead_id][0]
            messages.append(message)
        store_enrolment.reactivate(conn, name, again, now)
        store_enrolment.add_messages(conn, messages)
        journal.add(
            conn,
            [
                journal.entry(
                    journal.Kind.REENROLLED,
                    now,
                    {"event": runs[lead_id][0]},
                    lead_id=lead_id,
                    campaign=name,
                    source="engine",
                )
                for lead_id in again
            ],
        )
        return len(again)

    def _enrol_on_events(
        self, name: str, camp: Campaign, now: datetime, res: PassResult | None
    ) -> int:
        """Enrol the leads the journal's events since this campaign's cursor name in its
        `enrol_on` (and its audience matches), once per lead; the cursor moves past them. On a
        campaign's first pass the whole journal is read."""
        events = [e for e in map(enrol_on_event, camp.enrol_on) if e is not None]
        with self.store.read() as s:
            after = meta.enrol_on_cursor(s, name)
            last = after
            # lead -> its last matching event: the journal row and when it was recorded
            runs: dict[int, tuple[int, datetime]] = {}
            while True:
                rows = journal.lead_events(s, last, JOURNAL_KINDS, limit=5000)
                if not rows:
                    break
                last = rows[-1].id
                for r in rows:
                    if r.lead_id is not None and lead_event_matches(
                        events, r.kind, r.code, r.detail
                    ):
                        runs[r.lead_id] = (r.id, r.at)
        if last == after:
            return 0
        return self._enrol_campaign(
            name,
            camp,
            now,
            self.start_at(camp),
            res,
            ids=sorted(runs),
            cursor=last,
            runs=runs if camp.reenrol else None,
            read_from=after,
        )

    def enrol_event(
        self,
        name: str,
        camp: Campaign,
        event_id: str,
        event: dict[str, Any],
        audience: str | None,
        now: datetime,
        dry_run: bool = False,
        limit: int = 10,
    ) -> TriggerResult:
        """Record a trigger event and enrol the leads `audience` (the campaign's, with the
        event's values in place of `item`) picks, in one write transaction: each gets the first
        step's message about this event. A second delivery of the same event id enrols nobody.
        A lead with an active enrolment takes the event; one whose enrolment stopped does not.
        `dry_run`: the same pick in a read transaction, nothing written."""
        from campaignctl.trigger import TriggerResult

        where = f"campaigns.{name}.audience"
        try:
            matches = AudienceMatcher(audience, where)
            cond = condition(audience)
        except AudienceError as exc:
            from campaignctl.errors import UsageError

            raise UsageError(exc.message, exc.hint) from None
        first = camp.steps[0]
        result = TriggerResult(name, event_id, dry_run=dry_run)
        with self.store.read() if dry_run else self.store.write() as s:
            conn = s.connection()
            if not dry_run:
                locks.hold(conn, [locks.enrolment(name)])
            before = store_triggers.recorded(conn, name, event_id)
            row_id = None
            if before is None and not dry_run:
                row_id = store_triggers.record(conn, name, event_id, event, now)
            if before is not None or (row_id is None and not dry_run):
                again = before or store_triggers.recorded(conn, name, event_id)
                assert again is not None
                result.duplicate = (again.received_at, again.enrolled)
                return result
            store_enrolment.pick(conn, name, [first.channel, "*"], cond, stopped_only=True)
            self._settle_picks(conn, matches, {})
            if dry_run:
                rows = store_enrolment.picked(conn)
                result.enrolled = len(rows)
                ids = [r[0] for r in rows[:limit]]
                result.sample = [(r.id, r.email, r.phone) for r in store_leads.by_ids(conn, ids)]
                return result
            assert row_id is not None
            result.enrolled = self._enrol_picked(
                conn, name, first, now, self.start_at(camp), event=row_id
            )
            store_triggers.set_enrolled(conn, row_id, result.enrolled)
        return result

    @staticmethod
    def _settle_picks(conn: Conn, matches: AudienceMatcher, errors: dict[int, str]) -> None:
        """Python's verdict on the picks SQL left open, a batch at a time (memory stays flat
        when an audience SQL cannot read leaves every lead to Python): the matching ones are
        written, and the rest do not match in one statement at the end."""
        after = 0
        while rows := store_enrolment.unsure(conn, after, SETTLE_BATCH):
            after = rows[-1][0]
            yes: list[int] = []
            for row in rows:
                answer = matches.row_verdict(row)
                if answer is True:
                    yes.append(row[0])
                elif answer is not False:
                    errors[row[0]] = answer
            store_enrolment.settle(conn, yes)
        store_enrolment.settle_rest(conn)

    @staticmethod
    def _journal_errors(conn: Conn, name: str, errors: dict[int, str], now: datetime) -> None:
        """An `audience.error` row for each lead the audience failed on, once per campaign."""
        if not errors:
            return
        logged = store_enrolment.audience_errors_logged(conn, name, list(errors))
        journal.add(
            conn,
            [
                journal.entry(
                    journal.Kind.AUDIENCE_ERROR,
                    now,
                    {"error": error},
                    lead_id=lead_id,
                    campaign=name,
                    source="engine",
                )
                for lead_id, error in errors.items()
                if lead_id not in logged
            ],
        )

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
                locks.hold(conn, [locks.completion(name)])
                if meta.campaign_completed(conn, name) is not None:
                    continue  # another process recorded it
                if store_leads.active_count(conn, name) == 0:
                    meta.set_campaign_completed(conn, name, now)

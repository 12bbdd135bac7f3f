"""Enrolment: matching leads join a campaign with their first message; blasts complete."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from campaignctl.audience import AudienceError, compile_audience
from campaignctl.config import Campaign
from campaignctl.engine.context import EngineContext
from campaignctl.engine.result import PassResult
from campaignctl.store import leads as store_leads
from campaignctl.store import messages as store_messages
from campaignctl.store import meta

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


class Enrolment(EngineContext):
    """Enrols leads (sequences on every pass, a blast once) and completes blasts."""

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

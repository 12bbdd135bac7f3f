"""Enrolment on a channel with sending hours: each first message is due at the window's opening
in its lead's zone (its own time zone, else its phone number's, else the default), as
`pacing.lead_zone` says, computed per zone name in SQL and per lead only where needed."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from campaignctl.engine import Engine
from campaignctl.pacing import due_after, lead_zone
from campaignctl.store import Store
from tests.support import T0, add_leads, messages, project

WINDOW = """
[channels.sms]
provider = "outbox"
kind = "sms"
window = "09:00-17:00"
days = "mon-fri"

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
channel = "sms"
delay = "1h"
body = "hi"
"""

ZONES = ["Asia/Manila", "America/New_York", "Europe/Berlin", "Mars/Base", "", None]
PHONES = ["+12125550100", "+639171234567", "+442079460000", "+61291234567", None]


def test_first_messages_are_due_in_each_leads_own_zone(tmp_path: Path, db_url: str) -> None:
    cfg = project(tmp_path, WINDOW, tz="Asia/Tokyo")
    store = Store.for_config(cfg)
    rng = random.Random(7)
    leads = []
    for i in range(300):
        phone = rng.choice(PHONES)
        if phone is not None:  # unique phones
            phone = phone[:-3] + f"{i:03d}"
        leads.append(
            {
                "email": f"l{i}@example.com",
                "phone": phone,
                "timezone": rng.choice(ZONES),
                "status": "new",
            }
        )
    ids = add_leads(store, *leads)
    now = T0 + timedelta(hours=13, minutes=17)  # Monday 2026-03-02 14:17 UTC
    assert Engine(cfg, store).enrol(now) == 300
    got = messages(store)
    assert [m.lead_id for m in got] == ids  # one each, in lead order
    hours = Engine(cfg, store).hours["sms"]
    due_at = {m.lead_id: m.due_at for m in got}
    zones_seen = set()
    for lead_id, lead in zip(ids, leads, strict=True):
        tz = lead_zone(lead["timezone"], lead["phone"], "Asia/Tokyo")
        zones_seen.add(tz.key)
        want = due_after(now, timedelta(hours=1), hours, tz, None)
        assert due_at[lead_id] == want.replace(tzinfo=None) or due_at[lead_id] == want, (
            lead,
            due_at[lead_id],
            want,
        )
    # named zones, zones from phone numbers, and the default all occur
    assert {"Asia/Manila", "America/New_York", "Australia/Sydney", "Asia/Tokyo"} <= zones_seen
    store.close()


OPAQUE = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.welcome]
status = "active"
audience = "lead.budget|int > 100"
[[campaigns.welcome.steps]]
channel = "sms"
body = "hi"
"""


def test_an_audience_sql_cannot_read_is_decided_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    """Nothing of `|int` translates: Python decides every lead, a batch at a time, and the
    leads it matches enrol set-based; one it cannot evaluate (no budget) is left out and
    journalled."""
    import campaignctl.engine.enrol as enrol
    from campaignctl.audience import Opaque, condition
    from campaignctl.store import journal

    assert isinstance(condition("lead.budget|int > 100"), Opaque)
    monkeypatch.setattr(enrol, "SETTLE_BATCH", 7)
    cfg = project(tmp_path, OPAQUE)
    store = Store.for_config(cfg)
    budgets = [50, 150, None, 101, 100, 999] * 5
    ids = add_leads(
        store,
        *[
            {
                "email": f"b{i}@example.com",
                "status": "new",
                "attrs": {} if b is None else {"budget": b},
            }
            for i, b in enumerate(budgets)
        ],
    )
    assert Engine(cfg, store).enrol(T0) == 15
    want = [i for i, b in zip(ids, budgets, strict=True) if b in (150, 101, 999)]
    assert [m.lead_id for m in messages(store)] == want
    kind = str(journal.Kind.AUDIENCE_ERROR)
    with store.read() as s:
        errors = [i for i in ids if any(e.kind == kind for e in journal.for_lead(s, i))]
    assert errors == [i for i, b in zip(ids, budgets, strict=True) if b is None]
    store.close()

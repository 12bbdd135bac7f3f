"""`explain`: every decision about one lead, read from what was recorded when it was made."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from campaignctl.engine import Engine
from campaignctl.explain import explain
from campaignctl.store import Store
from campaignctl.store.schema import Journal
from tests.support import T0, ScriptedChannel, add_leads, days, project, transient

# Manila: T0 is Monday 09:00; the window opens at 09:00, and one text a day may go.
HELD = """
[channels.sms]
provider = "outbox"
kind = "sms"
window = "09:00-17:00"
daily_limit = 1

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "hi"

[campaigns.vip]
status = "active"
audience = "status == 'new' and 'vip' in tags"
[[campaigns.vip.steps]]
channel = "sms"
body = "vip"
"""


def _journal(store: Store, kind: str) -> list[Journal]:
    with store.read() as s:
        return list(s.exec(select(Journal).where(Journal.kind == kind)))


def test_a_window_deferral_and_a_limit_hold_are_explained_then_the_send(tmp_path: Path) -> None:
    cfg = project(tmp_path, HELD, tz="Asia/Manila")
    store = Store.for_config(cfg)
    early = T0 - timedelta(hours=3)
    first, second = add_leads(store, 2, timezone="Asia/Manila", tags=["buyer"], created_at=early)
    eng = Engine(cfg, store)
    rng = random.Random(1)
    eng.run_pass(T0 - timedelta(hours=2), rng)  # 07:00 in Manila: due when the window opens
    for hour in (0, 1, 2):  # the first goes at 09:00; the second waits on the daily limit
        eng.run_pass(T0 + timedelta(hours=hour), rng)
    evening = T0 + days(1) + timedelta(hours=9)  # 18:00 the day after: free, but window closed
    eng.run_pass(evening, rng)
    eng.run_pass(T0 + days(2), rng)  # 09:00 two days later: it goes

    # a hold is journalled when it starts and when it ends, not on every pass: held at 09:00
    # (passes at 10:00 and 11:00 add nothing), released in the evening, held again by its send
    held = _journal(store, "channel.held")
    assert [(j.channel, j.code, j.at) for j in held] == [
        ("sms", "limit", T0),
        ("sms", "limit", T0 + days(2)),
    ]
    assert [j.at for j in _journal(store, "channel.released")] == [evening]

    found = explain(cfg, store, "+1 212 555 0001", T0 + days(3))
    lines = [(x.what, x.campaign, x.step) for x in found.lines]
    assert lines[:6] == [
        ("imported", None, None),
        ("enrolled", "welcome", None),
        ("due", "welcome", "hello"),
        ("held", "welcome", "hello"),
        ("deferred", "welcome", "hello"),
        ("sent", "welcome", "hello"),
    ]
    by = {x.what: x for x in found.lines}
    assert by["due"].at == T0  # set at enrolment to when the window opens
    assert "moved to when the sms window opens in the lead's time zone" in by["due"].text
    assert "daily limit reached (1 in the last 24 hours); released 2026-03-03 18:00" in (
        by["held"].text
    )
    assert by["held"].at == T0
    assert by["deferred"].at == evening
    assert "outside the sending window; moved to 2026-03-04 09:00" in by["deferred"].text
    assert by["sent"].at == T0 + days(2)
    assert "provider id 2.json" in by["sent"].text
    # not enrolled in vip: the part of the audience that fails, evaluated on the lead now
    assert by["not enrolled"].campaign == "vip"
    assert "\"'vip' in tags\" is false" in by["not enrolled"].text
    # the first lead was never held: the limit came after its send
    mine = explain(cfg, store, "l0@ex.com", T0 + days(3))
    assert "held" not in [x.what for x in mine.lines]
    assert first != second


ONE = """
[channels.sms]
provider = "outbox"
kind = "sms"
retry_backoff = "1m"

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
channel = "sms"
body = "hi"
"""


def test_retries_are_explained_with_their_error_and_next_attempt(tmp_path: Path) -> None:
    cfg = project(tmp_path, ONE)
    store = Store.for_config(cfg)
    add_leads(store, 1, created_at=T0 - days(1))
    ch = ScriptedChannel("sms", errors={"+12125550000": [transient("429")]})
    eng = Engine(cfg, store, channels={"sms": ch})
    rng = random.Random(3)
    eng.run_pass(T0, rng)
    eng.run_pass(T0 + timedelta(hours=1), rng)
    found = explain(cfg, store, "l0@ex.com", T0 + days(1))
    whats = [x.what for x in found.lines]
    assert whats == ["imported", "enrolled", "due", "retry", "sent", "completed"]
    retry = found.lines[3]
    assert retry.at == T0
    assert retry.data["code"] == "429"
    assert "attempt 1 failed (429: Too Many Requests); retry at 2026-03-02 01:0" in retry.text
    assert found.lines[2].at == T0  # due when first tried, not when retried
    assert "provider id SM1" in found.lines[4].text


def test_cli_explain_text_json_and_unknown_lead(tmp_path: Path, cli) -> None:
    cfg = project(tmp_path, ONE)
    store = Store.for_config(cfg)
    add_leads(store, 1, status="new")
    store.close()
    assert cli("-C", tmp_path, "send").exit_code == 0
    assert cli("-C", tmp_path, "leads", "optout", "l0@ex.com").exit_code == 0

    text = cli("-C", tmp_path, "explain", "l0@ex.com")
    assert text.exit_code == 0, text.output
    assert "l0@ex.com · +12125550000 · status new" in text.stdout
    assert "opted out of: *" in text.stdout
    assert "opted out of every channel (campaignctl leads optout)" in text.stdout

    doc = json.loads(cli("-C", tmp_path, "explain", "+1 (212) 555-0000", "--format", "json").stdout)
    assert doc["lead"]["email"] == "l0@ex.com"
    whats = [x["what"] for x in doc["timeline"]]
    assert whats[:4] == ["imported", "enrolled", "due", "sent"]
    assert whats[-1] == "optout"

    missing = cli("-C", tmp_path, "explain", "nobody@ex.com")
    assert missing.exit_code == 2
    assert "no lead with email or phone 'nobody@ex.com'" in missing.stderr
    assert "campaignctl leads list --where" in missing.stderr
    bad = cli("-C", tmp_path, "explain", "not an address")
    assert bad.exit_code == 2
    assert "not an email address or a phone number" in bad.stderr


def test_a_dead_claim_made_uncertain_is_journalled(tmp_path: Path) -> None:
    from campaignctl.store import messages as store_messages

    cfg = project(tmp_path, ONE)
    store = Store.for_config(cfg)
    (lead,) = add_leads(store, 1, created_at=T0)
    Engine(cfg, store).enrol(T0)
    with store.write() as s:
        (row,) = store_messages.claimable(s, "sms", T0, [["welcome"]], 5)
        w = store_messages.Writes()
        w.set(row.id, T0, state="sending", claimed_by="gone:1", claimed_at=T0)
        w.flush(s)
        store_messages.mark_uncertain(s, [row.id], "the sending process stopped", T0)
    (j,) = _journal(store, "message.uncertain")
    assert (j.lead_id, j.message_id, j.campaign, j.channel) == (lead, row.id, "welcome", "sms")
    assert j.detail == {"reason": "the sending process stopped"}
    found = explain(cfg, store, "l0@ex.com", T0)
    assert [x.what for x in found.lines][-2:] == ["uncertain", "uncertain"]

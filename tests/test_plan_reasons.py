"""`plan` (issue 11): a finish date that does not depend on `--days`, each channel's daily
headroom, and the messages that will be skipped with their reasons."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from typer.testing import Result

from campaignctl.planner import plan
from campaignctl.store import Store
from tests.support import T0, add_leads, project

# Ten emails today, then an SMS three days after each: the SMS step decides the finish, and the
# two leads without a phone number are skipped on it; one opted out of SMS is skipped too.
TWO_STEPS = """
[channels.email]
provider = "outbox"
daily_limit = 40

[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Hi"
body = "Hello"
[[campaigns.welcome.steps]]
name = "nudge"
channel = "sms"
delay = "3d"
body = "Nudge"
"""


def _leads(tmp_path: Path, cli: Callable[..., Result]) -> None:
    cfg = project(tmp_path, TWO_STEPS)
    store = Store.for_config(cfg)
    add_leads(store, 8)
    add_leads(store, {"email": "nophone1@ex.com"}, {"email": "nophone2@ex.com"})
    add_leads(store, {"email": "stop@ex.com", "phone": "+12125550999"})
    store.close()
    res = cli("-C", tmp_path, "leads", "optout", "stop@ex.com", "--channel", "sms")
    assert res.exit_code == 0, res.stderr


def test_plan_finish_does_not_depend_on_days(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _leads(tmp_path, cli)
    docs = {}
    for n in ("2", "3", "10"):
        res = cli("-C", tmp_path, "plan", "--days", n, "--format", "json")
        assert res.exit_code == 0, res.stderr
        docs[n] = json.loads(res.stdout)
    assert [len(d["days"]) for d in docs.values()] == [2, 3, 10]
    finishes = {
        n: [(c["finish_day"], c["estimated"]) for c in d["campaigns"]] for n, d in docs.items()
    }
    # the SMS go three days after the emails of day 1: day 4, whatever is shown
    assert finishes == {n: [(4, False)] for n in docs}
    assert len({d["campaigns"][0]["finish"][:10] for d in docs.values()}) == 1
    assert docs["2"]["horizon"]["hit"] is False


ONE_A_DAY = """
[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 1

[campaigns.drip]
kind = "blast"
status = "active"
[[campaigns.drip.steps]]
channel = "sms"
body = "Hi"
"""


def test_plan_says_when_its_horizon_is_hit(tmp_path: Path, cli: Callable[..., Result]) -> None:
    cfg = project(tmp_path, ONE_A_DAY)
    store = Store.for_config(cfg)
    add_leads(store, 410)
    p = plan(cfg, store, T0, days=3)
    store.close()
    assert p.horizon_hit
    assert p.last_simulated_day() == p.start.date() + timedelta(days=399)
    drip = p.campaigns["drip"]
    assert (drip.sends, drip.remaining, drip.finish_day, drip.estimated) == (400, 10, 410, True)

    res = cli("-C", tmp_path, "plan", "--days", "3", "--format", "json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["horizon"]["hit"] is True
    assert doc["horizon"]["day"] == 400
    assert doc["campaigns"][0]["estimated"] is True
    res = cli("-C", tmp_path, "plan", "--days", "3")
    assert "the forecast stops at its horizon" in res.stdout
    assert "(day 400)" in res.stdout


def test_plan_headroom_and_skips(tmp_path: Path, cli: Callable[..., Result]) -> None:
    _leads(tmp_path, cli)
    res = cli("-C", tmp_path, "plan", "--days", "5", "--format", "json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    day1 = doc["headroom"][0]
    assert day1["day"] == 1
    # 11 leads have an email: 11 of 40 today; sms has no daily limit
    assert day1["channels"]["email"] == {"limit": 40, "planned": 11, "spare": 29}
    assert day1["channels"]["sms"] == {"limit": None, "planned": 0, "spare": None}
    assert len(doc["headroom"]) == 5
    assert sum(d["channels"]["sms"]["planned"] for d in doc["headroom"]) == 8
    assert sorted(
        (s["campaign"], s["step"], s["code"], s["reason"], s["count"]) for s in doc["skipped"]
    ) == [
        ("welcome", "nudge", "no_address", "lead has no phone number", 2),
        ("welcome", "nudge", "opted_out", "opted out of sms", 1),
    ]

    res = cli("-C", tmp_path, "plan", "--days", "2")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "daily headroom (limit / planned / spare)" in out
    assert "40 / 11 / 29" in out
    assert "0 (no limit)" in out
    assert "messages that will be skipped" in out
    assert "lead has no phone number" in out
    assert "opted out of sms" in out

"""Channel warm-up: `warmup = { start, days }` ramps the daily limit from `start` to
`daily_limit` over `days` from the channel's first send (recorded), and `plan` shows the ramp."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import Result

from campaignctl.breaker import Breaker
from campaignctl.config import load
from campaignctl.engine import Engine
from campaignctl.engine.decide import channel_hold
from campaignctl.pacing import Limits, Ramp, capacity, next_slot, warmup_day, warmup_limit
from campaignctl.planner import plan
from campaignctl.store import Store, journal, meta
from tests.support import T0, add_leads, days, project, sent_times
from tests.support.project import campaign_toml

H = timedelta(hours=1)


def channel(warmup: str | None = "{ start = 20, days = 30 }", daily: int | None = 110) -> str:
    text = '\n[channels.sms]\nprovider = "outbox"\nkind = "sms"\n'
    if daily is not None:
        text += f"daily_limit = {daily}\n"
    if warmup is not None:
        text += f"warmup = {warmup}\n"
    return text


BLAST = """
[campaigns.promo]
kind = "blast"
status = "active"
[[campaigns.promo.steps]]
channel = "sms"
body = "New listings this week. Reply STOP to opt out."
"""


def by_hand(day: int) -> int:
    """The ramp of the example: 20 on day 1, +90 over 30 days, rounded down, then 110."""
    return 110 if day > 30 else 20 + 90 * (day - 1) // 30


def test_the_ramp_is_a_pure_function_of_the_first_send_and_now() -> None:
    ramp = Ramp(20, 30)
    assert warmup_day(None, T0) == 1
    assert warmup_day(T0, T0) == warmup_day(T0, T0 + days(1) - H) == 1
    assert warmup_day(T0, T0 + days(1)) == 2
    assert warmup_day(T0, T0 + days(9.5)) == 10
    assert warmup_limit(ramp, 110, None, T0) == 20  # no send yet: day 1
    for day in (1, 2, 3, 10, 30, 31, 60):
        assert warmup_limit(ramp, 110, T0, T0 + days(day - 1)) == by_hand(day)
    assert warmup_limit(Ramp(1, 1), 5, T0, T0 + days(1)) == 5  # one day of warm-up


def test_limits_follow_the_ramp_and_the_slot_comes_at_the_next_warm_up_day() -> None:
    lim = Limits(daily=110, warmup=Ramp(20, 30)).started(T0)
    full = [T0 + 23 * H] * 20  # day 1's 20 sends, late in the day
    assert capacity(lim, full, T0 + 23 * H) == 0
    # without the ramp the next slot would be when those sends leave the rolling day (T0+47h);
    # the ramp raises the limit to 23 at T0 + 1d, with 3 to spare
    assert next_slot(lim, full, T0 + 23 * H) == T0 + days(1)
    assert capacity(lim, full, T0 + days(1)) == 3
    hold = channel_hold(lim, full, Breaker(), T0 + 23 * H)
    assert hold is not None
    assert hold.reason == "daily limit reached (warm-up day 1 of 30: 20 today)"
    assert hold.until == T0 + days(1)
    # once the ramp is over, the plain message
    done = Limits(daily=110, warmup=Ramp(20, 30)).started(T0 - days(40))
    hold = channel_hold(done, [T0 - H] * 110, Breaker(), T0)
    assert hold is not None
    assert hold.reason == "daily limit reached (110 in the last 24 hours)"


def test_engine_sends_per_day_exactly_what_the_ramp_allows(tmp_path: Path) -> None:
    cfg = project(tmp_path, channel() + BLAST)
    store = Store.for_config(cfg)
    add_leads(store, 400)
    forecast = plan(cfg, store, T0, days=10)
    eng = Engine(cfg, store)
    rng = random.Random(1)
    sent = []
    for day in range(10):
        res = eng.run_pass(T0 + days(day), rng)
        sent.append(res.total("sent"))
        # later the same day, nothing more: the day's limit is used up
        assert eng.run_pass(T0 + days(day) + 12 * H, rng).total("sent") == 0
    assert sent == [by_hand(d) for d in range(1, 11)]
    assert (sent[0], sent[9]) == (20, 47)  # day 1 and day 10
    with store.read() as s:
        conn = s.connection()
        assert meta.warmup_start(conn, "sms") == T0  # recorded with the first send
        holds = journal.channel_holds(conn, ["sms"])
    reasons = [h.detail["reason"] for h in holds if h.kind == "channel.held"]
    assert reasons[0] == "daily limit reached (warm-up day 1 of 30: 20 today)"
    assert "daily limit reached (warm-up day 10 of 30: 47 today)" in reasons
    # the plan forecast the same ramp: its headroom limit and its sends per day
    room = forecast.headroom()
    assert [h["sms"].limit for h in room.values()] == [by_hand(d) for d in range(1, 11)]
    assert [c["sms"] for c in forecast.per_day.values()] == sent
    assert forecast.daily_limits["sms"] == 110


def test_a_channel_that_sent_before_its_warm_up_counts_from_its_first_send(
    tmp_path: Path,
) -> None:
    cfg = project(tmp_path, channel(warmup=None) + BLAST)
    store = Store.for_config(cfg)
    add_leads(store, 300)
    assert Engine(cfg, store).run_pass(T0, random.Random(1)).total("sent") == 110
    store.close()
    toml = tmp_path / "campaigns.toml"
    ramp = "daily_limit = 110\nwarmup = { start = 20, days = 30 }\n"
    toml.write_text(toml.read_text().replace("daily_limit = 110\n", ramp))
    cfg = load(toml)
    store = Store.for_config(cfg)
    # day 6 counted from the first send five days ago: 20 + 90 x 5 / 30 = 35
    (room,) = plan(cfg, store, T0 + days(5), days=1).headroom().values()
    assert room["sms"].limit == 35
    assert Engine(cfg, store).run_pass(T0 + days(5), random.Random(1)).total("sent") == 35
    with store.read() as s:
        assert meta.warmup_start(s.connection(), "sms") == T0
    assert len(sent_times(store)) == 145


@pytest.mark.parametrize(
    ("warmup", "daily", "path", "words"),
    [
        ("{ start = 20, days = 30 }", None, "channels.sms.warmup", "needs daily_limit"),
        ("{ start = 0, days = 30 }", 110, "channels.sms.warmup.start", "at least 1"),
        ("{ start = 110, days = 30 }", 110, "channels.sms.warmup.start", "below daily_limit"),
        ("{ start = 20, days = 0 }", 110, "channels.sms.warmup.days", "at least 1"),
        ('"fast"', 110, "channels.sms.warmup", "valid dictionary"),
        ("{ start = 20 }", 110, "channels.sms.warmup.days", "missing"),
        ("{ start = 20, days = 30, step = 2 }", 110, "channels.sms.warmup.step", "unknown key"),
    ],
)
def test_check_refuses_a_bad_warmup_at_its_key(
    tmp_path: Path,
    cli: Callable[..., Result],
    warmup: str,
    daily: int | None,
    path: str,
    words: str,
) -> None:
    text = campaign_toml(channel(warmup, daily), BLAST, tz="UTC", region=None)
    (tmp_path / "campaigns.toml").write_text(text)
    res = cli("-C", tmp_path, "check", "--format", "json")
    assert res.exit_code == 1, res.output
    problems = [p for p in json.loads(res.stdout)["problems"] if p["severity"] == "error"]
    assert [p["path"] for p in problems] == [path]
    assert words in problems[0]["message"]
    assert problems[0]["line"] is not None
    res = cli("-C", tmp_path, "send")
    assert res.exit_code != 0
    assert path in res.stderr
    assert "Traceback" not in res.stderr


def test_plan_shows_the_ramp(tmp_path: Path, cli: Callable[..., Result]) -> None:
    cfg = project(tmp_path, channel() + BLAST)
    store = Store.for_config(cfg)
    add_leads(store, 1000)
    store.close()
    res = cli("-C", tmp_path, "plan", "--days", "4", "--format", "json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    limits = [d["channels"]["sms"]["limit"] for d in doc["headroom"]]
    planned = [d["channels"]["sms"]["planned"] for d in doc["headroom"]]
    assert limits == planned == [20, 23, 26, 29]
    res = cli("-C", tmp_path, "plan", "--days", "3")
    assert res.exit_code == 0, res.stderr
    assert "23 / 23 / 0" in res.stdout


def test_status_shows_the_day_of_the_warm_up(tmp_path: Path, cli: Callable[..., Result]) -> None:
    cfg = project(tmp_path, channel() + BLAST)
    store = Store.for_config(cfg)
    add_leads(store, 30)
    store.close()
    res = cli("-C", tmp_path, "status", "--format", "json")
    assert res.exit_code == 0, res.stderr
    (sms,) = json.loads(res.stdout)["channels"]
    assert sms["warmup"] == {
        "day": 1,
        "days": 30,
        "limit": 20,
        "daily_limit": 110,
        "first_send": None,
    }
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.splitlines()[-1].startswith("summary: sent 20,")
    res = cli("-C", tmp_path, "status")
    assert res.exit_code == 0, res.stderr
    assert "sms: warm-up day 1 of 30: 20 today, ramping to 110" in res.stdout
    res = cli("-C", tmp_path, "status", "--format", "json")
    (sms,) = json.loads(res.stdout)["channels"]
    assert sms["warmup"]["first_send"] is not None


def test_the_daemons_live_view_shows_the_limit_of_the_day(tmp_path: Path) -> None:
    from campaignctl.daemon import channel_view

    cfg = project(tmp_path, channel() + BLAST)
    store = Store.for_config(cfg)
    add_leads(store, 100)
    (row,) = channel_view(cfg, store, T0)
    assert (row["daily_limit"], row["sent_24h"]) == (20, 0)
    Engine(cfg, store).run_pass(T0, random.Random(1))
    (row,) = channel_view(cfg, store, T0 + days(1))
    assert row["daily_limit"] == 23

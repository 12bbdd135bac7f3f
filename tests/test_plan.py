"""`plan`: the WhatsApp scenario (10,000 leads at 250 a day); the forecast agrees with the sends."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import Result

from campaignctl.channels.memory import MemoryChannel
from campaignctl.config import load
from campaignctl.engine import Engine
from campaignctl.planner import plan
from campaignctl.store import Store
from campaignctl.suppress_list import import_file
from tests.support import T0, add_leads, messages, project

WHATSAPP = """
[channels.whatsapp]
provider = "outbox"
kind = "whatsapp"
daily_limit = 250

[campaigns.promo]
kind = "blast"
status = "active"

[[campaigns.promo.steps]]
channel = "whatsapp"
body = "Hi {{ lead.first_name }}, our new listings are out."
"""


def test_whatsapp_10000_leads_at_250_a_day_finish_on_day_40(tmp_path: Path) -> None:
    cfg = project(tmp_path, WHATSAPP, tz="Asia/Manila")
    store = Store.for_config(cfg)
    add_leads(store, 10_000)

    forecast = plan(cfg, store, T0, days=45)
    promo = forecast.campaigns["promo"]
    assert promo.finish_day == 40
    assert promo.remaining == 0
    assert not promo.estimated
    per_day = [c["whatsapp"] for c in forecast.per_day.values()]
    assert per_day[:40] == [250] * 40
    assert per_day[40:] == [0] * 5
    # showing the default 30 days changes nothing: the forecast runs to the end (issue 11)
    short = plan(cfg, store, T0).campaigns["promo"]
    assert (short.finish_day, short.estimated, short.remaining) == (40, False, 0)
    # a horizon inside the sends: the last 2,500 are extrapolated at the simulated pace
    cut = plan(cfg, store, T0, horizon_days=30)
    assert cut.horizon_hit
    cut_promo = cut.campaigns["promo"]
    assert (cut_promo.finish_day, cut_promo.estimated, cut_promo.remaining) == (40, True, 2500)

    # 40 simulated days of passes, four a day: every lead exactly once, 250 a day.
    channel = MemoryChannel("whatsapp", "whatsapp")
    eng = Engine(cfg, store, channels={"whatsapp": channel})
    rng = random.Random(1)
    by_day: Counter[int] = Counter()
    for day in range(40):
        for quarter in range(4):
            res = eng.run_pass(T0 + timedelta(days=day, hours=6 * quarter), rng)
            by_day[day] += res.total("sent")
    assert [by_day[d] for d in range(40)] == per_day[:40]
    assert len(channel.sent) == 10_000
    assert len({m.to for m in channel.sent}) == 10_000
    assert {m.state for m in messages(store)} == {"sent"}
    assert eng.run_pass(T0 + timedelta(days=41), rng).total("sent") == 0


SEQUENCE = """
[channels.email]
provider = "outbox"
daily_limit = 30
window = "09:00-17:00"
days = "mon-fri"

[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 20

[campaigns.welcome]
status = "active"
priority = 1
[[campaigns.welcome.steps]]
name = "hello"
channel = "email"
subject = "Hi"
body = "Hello"
[[campaigns.welcome.steps]]
name = "nudge"
channel = "sms"
delay = "1d"
body = "Nudge"

[campaigns.news]
status = "active"
priority = 5
[[campaigns.news.steps]]
channel = "email"
subject = "News"
body = "News"
"""


@pytest.mark.parametrize("suppressed", [False, True], ids=["plain", "suppressed"])
def test_plan_matches_what_the_engine_then_sends(tmp_path: Path, suppressed: bool) -> None:
    cfg = project(tmp_path, SEQUENCE, tz="Asia/Manila")
    store = Store.for_config(cfg)
    add_leads(store, 50, timezone="Asia/Manila")
    if suppressed:  # two addresses on every channel, two phones on sms: both skip them alike
        (tmp_path / "all.csv").write_text("email\nl3@ex.com\nl7@ex.com\n")
        (tmp_path / "sms.csv").write_text("phone\n+12125550010\n+12125550011\n")
        import_file(lambda: store, cfg, tmp_path / "all.csv", None, T0 - timedelta(hours=3))
        import_file(lambda: store, cfg, tmp_path / "sms.csv", "sms", T0 - timedelta(hours=3))
    start = T0 - timedelta(hours=2)  # 07:00 in Manila: the email window opens at 09:00
    forecast = plan(cfg, store, start, days=14)
    # the engine, passing every 30 minutes for 14 days
    eng = Engine(
        cfg, store, channels={n: MemoryChannel(n, cfg.channel_kind(n)) for n in cfg.channels}
    )
    rng = random.Random(1)
    t = start
    while t < start + timedelta(days=14):
        eng.run_pass(t, rng)
        t += timedelta(minutes=30)
    actual: Counter[tuple[str, str]] = Counter()
    for m in messages(store):
        if m.state == "sent" and m.sent_at:
            day = m.sent_at.astimezone(ZoneInfo(forecast.timezone)).date().isoformat()
            actual[(day, m.channel)] += 1
    expected = {
        (d.isoformat(), ch): n
        for d, counts in forecast.per_day.items()
        for ch, n in counts.items()
        if n
    }
    assert {k: v for k, v in actual.items() if v} == expected
    assert forecast.campaigns["welcome"].finish_day is not None
    assert forecast.campaigns["news"].sends == (48 if suppressed else 50)
    if suppressed:
        skipped = Counter(m.channel for m in messages(store) if m.reason_code == "suppressed")
        assert skipped == {"email": 4, "sms": 2}  # welcome and news emails; l3, l7 go on to sms
    # priority: the welcome emails (priority 1) all went before any newsletter
    emails = [m for m in messages(store) if m.channel == "email" and m.sent_at]
    last_welcome = max(m.sent_at for m in emails if m.campaign == "welcome" and m.sent_at)
    first_news = min(m.sent_at for m in emails if m.campaign == "news" and m.sent_at)
    assert last_welcome <= first_news
    assert forecast.campaigns["welcome"].waits["window"] > 0


def test_plan_and_status_json_shapes(tmp_path: Path, cli: Callable[..., Result]) -> None:
    cfg = project(tmp_path, WHATSAPP, tz="Asia/Manila")
    store = Store.for_config(cfg)
    add_leads(store, 600)
    store.close()
    res = cli("-C", tmp_path, "plan", "--days", "5", "--format", "json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [d["day"] for d in doc["days"]] == [1, 2, 3, 4, 5]
    assert [d["channels"]["whatsapp"] for d in doc["days"]] == [250, 250, 100, 0, 0]
    (promo,) = doc["campaigns"]
    assert promo["name"] == "promo"
    assert promo["finish_day"] == 3
    assert set(promo["waits"]) == {"limit", "window", "delay"}

    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.splitlines()[-1].startswith("summary: sent 250, failed 0")
    assert "deferred 350 by limit" in res.stdout

    res = cli("-C", tmp_path, "status", "--format", "json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    (camp,) = doc["campaigns"]
    assert camp["name"] == "promo"
    assert camp["status"] == "active"
    assert camp["enrolled"] == 600
    (step,) = camp["steps"]
    assert {
        k: step[k] for k in ("name", "channel", "pending", "sent", "failed", "skipped", "uncertain")
    } == {
        "name": "step1",
        "channel": "whatsapp",
        "pending": 350,
        "sent": 250,
        "failed": 0,
        "skipped": 0,
        "uncertain": 0,
    }
    assert step["opted_out"] == 0
    assert camp["finish_day"] == 3  # the 350 left go over the next two days


def test_plan_matches_the_engine_under_a_frequency_cap(tmp_path: Path) -> None:
    """`settings.max_per_lead`: the planner defers as the claim does, priority first."""
    cfg = project(tmp_path, SEQUENCE, tz="Asia/Manila")
    toml = tmp_path / "campaigns.toml"
    toml.write_text(toml.read_text().replace("[settings]\n", '[settings]\nmax_per_lead = "1/1d"\n'))
    cfg = load(toml)
    assert cfg.settings.max_per_lead is not None
    store = Store.for_config(cfg)
    add_leads(store, 50, timezone="Asia/Manila")
    start = T0 - timedelta(hours=2)
    forecast = plan(cfg, store, start, days=14)
    eng = Engine(
        cfg, store, channels={n: MemoryChannel(n, cfg.channel_kind(n)) for n in cfg.channels}
    )
    rng = random.Random(1)
    t = start
    while t < start + timedelta(days=14):
        eng.run_pass(t, rng)
        t += timedelta(minutes=30)
    actual: Counter[tuple[str, str]] = Counter()
    by_lead: dict[int, list[datetime]] = {}
    for m in messages(store):
        if m.state == "sent" and m.sent_at:
            day = m.sent_at.astimezone(ZoneInfo(forecast.timezone)).date().isoformat()
            actual[(day, m.channel)] += 1
            by_lead.setdefault(m.lead_id, []).append(m.sent_at)
    expected = {
        (d.isoformat(), ch): n
        for d, counts in forecast.per_day.items()
        for ch, n in counts.items()
        if n
    }
    assert {k: v for k, v in actual.items() if v} == expected
    assert sum(actual.values()) == 150  # every message went, in the end
    # never two sends to a lead within a day
    for times in by_lead.values():
        times.sort()
        assert all(b - a >= timedelta(days=1) for a, b in itertools.pairwise(times))

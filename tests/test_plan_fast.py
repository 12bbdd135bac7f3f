"""The planner's simulation (queues per zone and priority, clocks per zone, all of an instant's
sends in one step) answers exactly as the event-by-event reference it replaced, and
`pacing.next_close` agrees with a minute-by-minute scan of `is_open`."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaignctl import planner
from campaignctl.config import Config
from campaignctl.engine import Engine
from campaignctl.pacing import Hours, is_open, next_close, next_open
from campaignctl.planner import Plan, plan
from campaignctl.store import Lead, Store
from campaignctl.store.schema import OptOut
from campaignctl.timespec import Window
from tests.support import T0, project
from tests.support.plan_reference import ReferenceSimulation

ZONES = ["America/New_York", "Asia/Manila", "Europe/London", "Australia/Lord_Howe", None]
WINDOWS = ["08:00-18:00", "21:00-08:00", "01:30-02:30", "00:00-24:00", "12:00-13:00"]
DAYS = ["mon-fri", "sat,sun", "mon,wed,fri"]


def _channel(rng: random.Random, name: str, kind: str) -> str:
    text = f'[channels.{name}]\nprovider = "outbox"\nkind = "{kind}"\n'
    daily = rng.randint(8, 30) if rng.random() < 0.7 else None
    if daily:
        text += f"daily_limit = {daily}\n"
    if rng.random() < 0.4:
        text += f"hourly_limit = {rng.randint(1, 8)}\n"
    if rng.random() < 0.3:
        text += f"per_second = {rng.choice([1, 5])}\n"
    if rng.random() < 0.2:
        text += f'min_interval = "{rng.choice(["10m", "1h", "3h"])}"\n'
    if rng.random() < 0.2:
        text += f'jitter = "{rng.choice(["30s", "20m"])}"\n'
    if rng.random() < 0.5:
        text += f'window = "{rng.choice(WINDOWS)}"\n'
    if rng.random() < 0.3:
        text += f'days = "{rng.choice(DAYS)}"\n'
    return text + "\n"


def _campaign(rng: random.Random, name: str) -> str:
    text = f'[campaigns.{name}]\nstatus = "active"\npriority = {rng.choice([1, 5, 10])}\n'
    text += f'kind = "{rng.choice(["sequence", "blast"])}"\n'
    if rng.random() < 0.5:
        text += f"audience = \"'{rng.choice(['a', 'b'])}' in tags\"\n"
    if rng.random() < 0.3:
        text += 'stop_on = ["reply"]\n'
    if rng.random() < 0.2:
        text += f"start_at = {(T0 + timedelta(hours=rng.randint(1, 60))).isoformat()}\n"
    for i in range(rng.randint(1, 3)):
        text += f'[[campaigns.{name}.steps]]\nname = "s{i}"\n'
        text += f'channel = "{rng.choice(["mail", "text"])}"\nbody = "Hi"\nsubject = "Hello"\n'
        text += f'delay = "{rng.choice(["0s", "0s", "30m", "1d", "2d3h"])}"\n'
    return text + "\n"


def _project(tmp_path: Path, seed: int) -> tuple[Config, Store]:
    rng = random.Random(seed)
    body = _channel(rng, "mail", "email") + _channel(rng, "text", "sms")
    body += "".join(_campaign(rng, f"c{i}") for i in range(rng.randint(1, 3)))
    cfg = project(tmp_path, body, tz=rng.choice(["UTC", "Asia/Manila", "America/New_York"]))
    store = Store.for_config(cfg)
    leads = [
        Lead(
            email=f"l{i}@ex.com" if rng.random() < 0.85 else None,
            phone=f"+1212555{i:04d}" if rng.random() < 0.8 else None,
            first_name=f"N{i}",
            timezone=rng.choice(ZONES),
            tags=rng.sample(["a", "b"], rng.randint(0, 2)),
        )
        for i in range(rng.randint(20, 120))
    ]
    with store.write() as s:
        s.add_all(leads)
        s.flush()
        for lead in leads:
            if rng.random() < 0.1:
                s.add(OptOut(lead_id=lead.id or 0, channel=rng.choice(["mail", "text", "*"])))
    if rng.random() < 0.5:  # some projects already enrolled: pending messages are loaded
        Engine(cfg, store, channels={}).enrol(T0)
    return cfg, store


def _answers(p: Plan) -> object:
    return (
        p.per_day,
        p.horizon_hit,
        {
            n: (c.sends, c.remaining, c.finish, c.finish_day, c.estimated, c.skipped, c.waits)
            for n, c in p.campaigns.items()
        },
    )


@pytest.mark.parametrize("seed", range(12))
def test_plan_agrees_with_the_event_by_event_reference(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, store = _project(tmp_path, seed)
    now = T0 + timedelta(minutes=random.Random(seed).randint(0, 3000), seconds=7)
    fast = plan(cfg, store, now, days=20, horizon_days=20)
    monkeypatch.setattr(planner, "_Simulation", ReferenceSimulation)
    slow = plan(cfg, store, now, days=20, horizon_days=20)
    store.close()
    assert _answers(fast) == _answers(slow)
    assert sum(c.sends for c in fast.campaigns.values()) > 0 or seed % 2


def _scan_close(t: datetime, hours: Hours, tz: ZoneInfo) -> datetime | None:
    """The first closed instant, minute by minute (these zones' offsets are whole minutes)."""
    if not is_open(t, hours, tz):
        return t
    m = t.replace(second=0, microsecond=0)
    for _ in range(60 * 24 * 10):
        m += timedelta(minutes=1)
        if not is_open(m, hours, tz):
            return m
    return None


def test_next_close_agrees_with_a_scan_across_dst() -> None:
    rng = random.Random(7)
    zones = ["America/New_York", "Australia/Lord_Howe", "Pacific/Apia", "America/Santiago"]
    transitions = [datetime(2026, 3, 8, 6), datetime(2026, 11, 1, 5), datetime(2026, 4, 4, 14)]
    for _ in range(150):
        tz = ZoneInfo(rng.choice(zones))
        start, end = rng.choice([(90, 150), (60, 180), (480, 1080), (1260, 480), (0, 1440)])
        days = rng.choice([None, frozenset(range(5)), frozenset({0, 2, 6})])
        hours = Hours(Window(start, end), days)
        base = rng.choice(transitions).replace(tzinfo=UTC)
        t = base + timedelta(seconds=rng.randint(-2 * 86400, 2 * 86400), microseconds=5)
        closes = next_close(t, hours, tz)
        assert closes == _scan_close(t, hours, tz), (tz, hours, t)
        if closes is not None and closes > t:
            assert next_open(closes, hours, tz) > closes


INTERLEAVED = """
[channels.mail]
provider = "outbox"
kind = "email"

[channels.text]
provider = "outbox"
kind = "sms"
daily_limit = 3
window = "08:00-18:00"

[channels.chat]
provider = "outbox"
kind = "sms"
window = "08:00-09:00"

[campaigns.c]
status = "active"
[[campaigns.c.steps]]
channel = "mail"
subject = "Hi"
body = "Hi"
[[campaigns.c.steps]]
channel = "text"
body = "Hi"
[[campaigns.c.steps]]
channel = "chat"
body = "Hi"
"""


def test_a_run_is_cut_where_another_zones_queue_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ten leads alternating Tokyo and Manila: their second step falls due at one instant in
    # both zones' queues, three a day; the engine takes them by sequence, across the zones,
    # and the third step's day (UTC) tells which zone each went to.
    cfg = project(tmp_path, INTERLEAVED, tz="UTC")
    store = Store.for_config(cfg)
    with store.write() as s:
        s.add_all(
            Lead(phone=f"+8190000000{i}", email=f"l{i}@ex.com", timezone=zone)
            for i, zone in zip(range(10), ["Asia/Tokyo", "Asia/Manila"] * 5, strict=True)
        )
    fast = plan(cfg, store, T0, days=6, horizon_days=6)
    monkeypatch.setattr(planner, "_Simulation", ReferenceSimulation)
    slow = plan(cfg, store, T0, days=6, horizon_days=6)
    store.close()
    assert _answers(fast) == _answers(slow)
    assert [d["chat"] for d in fast.per_day.values()][:2] == [2, 2]

"""Property: whatever the leads, limits, windows and pass times, limits hold and nothing repeats."""

from __future__ import annotations

import itertools
import random
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from campaignctl.channels.memory import MemoryChannel
from campaignctl.engine import Engine
from campaignctl.pacing import Hours, is_open, lead_zone
from campaignctl.store import Store
from campaignctl.timespec import parse_days, parse_window
from tests.support import T0, add_leads, messages, project
from tests.support.databases import DATABASES


@pytest.fixture(scope="module", params=DATABASES)
def fresh_url(request: pytest.FixtureRequest) -> Callable[[Path], str]:
    """A new empty database for each example: a file in its folder, or a PostgreSQL database
    in the session's cluster (tests/support/databases.py)."""
    if request.param == "sqlite":
        return lambda folder: f"sqlite:///{folder / 'campaignctl.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    return lambda _folder: str(cluster.create_database())


ZONES = ["Asia/Manila", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", None]


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    daily = draw(st.integers(1, 12))
    hourly = draw(st.one_of(st.none(), st.integers(1, daily)))
    start = draw(st.integers(0, 23))
    end = start + draw(st.integers(1, 23))
    end = end if end <= 24 else end - 24  # past midnight: a wrapping window
    return {
        "daily": daily,
        "hourly": hourly,
        "min_interval": draw(st.sampled_from(["", "90s", "20m"])),
        "window": draw(st.one_of(st.none(), st.just(f"{start:02d}:00-{end:02d}:00"))),
        "days": draw(st.sampled_from([None, "mon-fri", "sat,sun", "tue"])),
        "zones": draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=15)),
        "steps": draw(st.integers(1, 3)),
        "passes": sorted(draw(st.lists(st.integers(0, 9 * 24 * 60), min_size=1, max_size=40))),
    }


def _toml(sc: dict[str, object]) -> str:
    lines = ["[channels.sms]", 'provider = "outbox"', 'kind = "sms"']
    lines.append(f"daily_limit = {sc['daily']}")
    if sc["hourly"]:
        lines.append(f"hourly_limit = {sc['hourly']}")
    if sc["min_interval"]:
        lines.append(f'min_interval = "{sc["min_interval"]}"')
    if sc["window"]:
        lines.append(f'window = "{sc["window"]}"')
    if sc["days"]:
        lines.append(f'days = "{sc["days"]}"')
    lines += ["[campaigns.c]", 'status = "active"']
    for i in range(int(str(sc["steps"]))):
        lines += ["[[campaigns.c.steps]]", f'name = "s{i}"', 'channel = "sms"']
        lines += [f'delay = "{i * 7}h"', 'body = "hello"']
    return "\n".join(lines) + "\n"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_limits_windows_and_at_most_once_hold(
    fresh_url: Callable[[Path], str], sc: dict[str, object]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = project(Path(tmp), _toml(sc), tz="Asia/Manila")
        store = Store(fresh_url(Path(tmp)))
        zones = list(sc["zones"])  # type: ignore[call-overload]
        for i, z in enumerate(zones):
            add_leads(store, 1, start=i, timezone=z)
        channel = MemoryChannel("sms", "sms")
        eng = Engine(cfg, store, channels={"sms": channel}, enrol_every=timedelta(0))
        rng = random.Random(0)
        for minute in sc["passes"]:  # type: ignore[attr-defined]
            eng.run_pass(T0 + timedelta(minutes=minute), rng)
        rows = messages(store)
        store.close()

    sent = [m for m in rows if m.state == "sent"]
    event("limited" if any(m.state == "pending" for m in rows) else "all sent")
    assert len(channel.sent) == len(sent)
    # nothing twice: one provider call per message, one message per (campaign, step, lead)
    assert len({m.id for m in channel.sent}) == len(channel.sent)
    assert len({(m.campaign, m.step, m.lead_id) for m in rows}) == len(rows)
    times = sorted(m.sent_at for m in sent if m.sent_at)
    daily, hourly = int(str(sc["daily"])), sc["hourly"]
    for t in times:
        assert sum(1 for u in times if t <= u < t + timedelta(days=1)) <= daily
        if hourly:
            assert sum(1 for u in times if t <= u < t + timedelta(hours=1)) <= int(str(hourly))
    hours = Hours(
        parse_window(str(sc["window"])) if sc["window"] else None,
        parse_days(str(sc["days"])) if sc["days"] else None,
    )
    for m in sent:
        assert m.sent_at is not None
        tz = lead_zone(zones[m.lead_id - 1], m.recipient, "Asia/Manila")  # ids count from 1
        assert is_open(m.sent_at, hours, tz), (m.sent_at, tz)
    if sc["min_interval"]:
        gap = timedelta(seconds=90) if sc["min_interval"] == "90s" else timedelta(minutes=20)
        assert all(b - a >= gap for a, b in itertools.pairwise(times))

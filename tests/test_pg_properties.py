"""The engine's property (tests/test_engine_properties.py) on PostgreSQL, with two workers at once:
whatever the leads, limits, windows and pass times, two engines passing at the same instants in
two threads (two daemons on two hosts) keep every rolling window within its limit, the pacing
gap between any two sends, every send in its window, and send nothing twice."""

from __future__ import annotations

import itertools
import random
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings

from campaignctl.channels.base import Outgoing
from campaignctl.channels.memory import MemoryChannel
from campaignctl.config import load
from campaignctl.engine import Engine
from campaignctl.pacing import Hours, is_open, lead_zone
from campaignctl.store import Store
from campaignctl.timespec import parse_days, parse_window
from tests.support import T0, add_leads, campaign_toml, messages
from tests.support.postgres import Cluster
from tests.test_engine_properties import _toml, scenarios

#: Two hosts (a worker on another host is judged by its heartbeat, never by a local pid).
WORKERS = ("host-a:101:1", "host-b:202:1")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_two_workers_on_postgresql_hold_limits_windows_and_at_most_once(
    pg_cluster: Cluster, sc: dict[str, object]
) -> None:
    url = pg_cluster.create_database()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "campaigns.toml"
            path.write_text(campaign_toml(tz="Asia/Manila", region=None, database=url) + _toml(sc))
            cfg = load(path)
            store = Store.for_config(cfg)
            zones = list(sc["zones"])  # type: ignore[call-overload]
            for i, z in enumerate(zones):
                add_leads(store, 1, start=i, timezone=z)
            channels = [MemoryChannel("sms", "sms") for _ in WORKERS]
            engines = [
                Engine(cfg, store, channels={"sms": ch}, worker=w, enrol_every=timedelta(0))
                for ch, w in zip(channels, WORKERS, strict=True)
            ]
            rngs = [random.Random(i) for i in range(len(engines))]
            errors: list[BaseException] = []

            def run(eng: Engine, rng: random.Random, minute: int) -> None:
                try:
                    eng.run_pass(T0 + timedelta(minutes=minute), rng)
                except BaseException as exc:  # reported below, with the scenario
                    errors.append(exc)

            for minute in sc["passes"]:  # type: ignore[attr-defined]
                threads = [
                    threading.Thread(target=run, args=(eng, rng, minute))
                    for eng, rng in zip(engines, rngs, strict=True)
                ]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
            assert not errors, errors
            rows = messages(store)
            store.close()
    finally:
        pg_cluster.drop_database(url.rsplit("/", 1)[1])

    provider: list[Outgoing] = [m for ch in channels for m in ch.sent]
    sent = [m for m in rows if m.state == "sent"]
    event("limited" if any(m.state == "pending" for m in rows) else "all sent")
    assert len(provider) == len(sent)
    # nothing twice: one provider call per message, one message per (campaign, step, lead)
    assert len({m.id for m in provider}) == len(provider)
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

"""A channel that alone sends for a while (a paced channel's sends, an instant each) is
simulated in one stretch (`planner._Simulation._solo`): it answers exactly as the
event-by-event reference, across windows, zones, limits, jitter and zero-delay next steps."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from campaignctl import planner
from campaignctl.config import Config
from campaignctl.engine import Engine
from campaignctl.planner import plan
from campaignctl.store import Lead, Store
from campaignctl.store.schema import OptOut
from tests.support import T0, project
from tests.support.plan_reference import ReferenceSimulation
from tests.test_plan_fast import WINDOWS, ZONES, _answers


def _channel(rng: random.Random, name: str, kind: str) -> str:
    """A paced channel (every send an instant of its own), often with limits and a window."""
    text = f'[channels.{name}]\nprovider = "outbox"\nkind = "{kind}"\n'
    if rng.random() < 0.7:
        text += f"daily_limit = {rng.randint(10, 40)}\n"
    if rng.random() < 0.4:
        text += f"hourly_limit = {rng.randint(2, 9)}\n"
    text += rng.choice(
        ["per_second = 1\n", "per_second = 5\n", 'min_interval = "7m"\n', 'min_interval = "1h"\n']
    )
    if rng.random() < 0.25:
        text += f'jitter = "{rng.choice(["30s", "20m"])}"\n'
    if rng.random() < 0.6:
        text += f'window = "{rng.choice(WINDOWS)}"\n'
    if rng.random() < 0.3:
        text += 'days = "mon-fri"\n'
    return text + "\n"


def _project(tmp_path: Path, seed: int) -> tuple[Config, Store]:
    rng = random.Random(seed)
    body = _channel(rng, "mail", "email") + _channel(rng, "text", "sms")
    for c in range(rng.randint(1, 3)):
        body += f'[campaigns.c{c}]\nstatus = "active"\npriority = {rng.choice([1, 5])}\n'
        for i in range(rng.randint(1, 3)):
            body += f'[[campaigns.c{c}.steps]]\nname = "s{i}"\n'
            body += f'channel = "{rng.choice(["mail", "text"])}"\nbody = "Hi"\nsubject = "Hi"\n'
            body += f'delay = "{rng.choice(["0s", "0s", "10m", "1d"])}"\n'
    cfg = project(tmp_path, body, tz=rng.choice(["UTC", "Asia/Manila", "America/New_York"]))
    store = Store.for_config(cfg)
    leads = [
        Lead(
            email=f"l{i}@ex.com" if rng.random() < 0.9 else None,
            phone=f"+1212555{i:04d}" if rng.random() < 0.85 else None,
            timezone=rng.choice(ZONES),
        )
        for i in range(rng.randint(60, 200))
    ]
    with store.write() as s:
        s.add_all(leads)
        s.flush()
        for lead in leads:
            if rng.random() < 0.05:
                s.add(OptOut(lead_id=lead.id or 0, channel=rng.choice(["mail", "text"])))
    if rng.random() < 0.5:
        Engine(cfg, store, channels={}).enrol(T0)
    return cfg, store


@pytest.mark.parametrize("seed", range(16))
def test_a_channel_sending_alone_agrees_with_the_reference(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, store = _project(tmp_path, seed)
    stretches: list[int] = []
    solo = planner._Simulation._solo

    def counted(self: planner._Simulation, ch: str, t: object) -> object:
        stretches.append(1)
        return solo(self, ch, t)  # type: ignore[arg-type]

    monkeypatch.setattr(planner._Simulation, "_solo", counted)
    now = T0 + timedelta(minutes=random.Random(seed).randint(0, 3000), seconds=3)
    fast = plan(cfg, store, now, days=10, horizon_days=10)
    monkeypatch.setattr(planner, "_Simulation", ReferenceSimulation)
    slow = plan(cfg, store, now, days=10, horizon_days=10)
    store.close()
    assert _answers(fast) == _answers(slow)
    assert stretches  # the stretches were taken

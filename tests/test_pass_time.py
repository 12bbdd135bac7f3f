"""A pass ends after the batch that reaches `PASS_TIME` (or the run's `--max-time`), and the next
pass takes the rest with its own `now`: a slow provider's messages are stamped when they went,
the worker's heartbeat keeps up (another daemon never takes it for dead), and `--max-time`
holds inside a pass too. Time is a fake clock the channel moves on each send."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from campaignctl.channels.base import Outgoing, Sent
from campaignctl.engine import Engine
from campaignctl.runner import PASS_TIME, RunOptions, run
from campaignctl.store import Store
from campaignctl.store.schema import Worker
from tests.support import T0, add_leads, project, sent_times
from tests.test_dry_run_sample import UNLIMITED  # one SMS step, no limits

# on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

#: what one send takes on the fake clock: two make a batch of 40 s, so a pass of 60 s holds two
SEND_TIME = timedelta(seconds=20)


@dataclass
class SlowChannel:
    """Accepts every message, each taking `SEND_TIME` of the clock it moves."""

    now: datetime = T0
    sent: list[tuple[int, datetime]] = field(default_factory=list)

    def clock(self) -> datetime:
        return self.now

    def send(self, msg: Outgoing) -> Sent:
        self.now += SEND_TIME
        self.sent.append((msg.id, self.now))
        return Sent(provider_id=f"SM{msg.id}")

    def close(self) -> None:
        pass


def _run(tmp_path: Path, leads: int, max_time: timedelta | None = None) -> tuple[Store, int]:
    cfg = project(tmp_path, UNLIMITED)
    store = Store.for_config(cfg)
    add_leads(store, leads)
    channel = SlowChannel()
    engine = Engine(cfg, store, channels={"sms": channel}, batch=2)  # type: ignore[dict-item]
    result = run(engine, random.Random(1), RunOptions(max_time=max_time), clock=channel.clock)
    assert len({i for i, _ in channel.sent}) == len(channel.sent)  # each message once
    return store, result.passes


def test_a_slow_pass_is_cut_and_each_send_stamped_near_when_it_went(tmp_path: Path) -> None:
    assert PASS_TIME.total_seconds() == 60  # the arithmetic below
    store, passes = _run(tmp_path, 10)
    times = sent_times(store)
    assert len(times) == 10
    assert passes >= 3  # 10 sends of 20 s: 200 s, in passes of at most 80 s
    # stamped with their own pass's `now`, never more than a pass behind the clock
    assert times[-1] - times[0] >= timedelta(seconds=120)
    with store.read() as s:
        beats = [w.heartbeat_at for w in s.exec(select(Worker))]
    assert max(beats) == times[-1]  # the last pass beat when it started, not the first


def test_max_time_holds_inside_a_pass(tmp_path: Path) -> None:
    store, passes = _run(tmp_path, 10, max_time=timedelta(seconds=90))
    # pass 1 (t=0): 2 batches until t=80 (>= 60); pass 2 (t=80): 1 batch until t=120 (>= 90)
    assert len(sent_times(store)) == 6
    assert passes == 2

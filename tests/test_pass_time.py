"""A pass ends after the send that reaches `PASS_TIME` (or the run's `--max-time`), and the next
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
from campaignctl.store.schema import Message, Worker
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


def _run(
    tmp_path: Path, leads: int, max_time: timedelta | None = None, batch: int = 2
) -> tuple[Store, int, SlowChannel]:
    cfg = project(tmp_path, UNLIMITED)
    store = Store.for_config(cfg)
    add_leads(store, leads)
    channel = SlowChannel()
    engine = Engine(cfg, store, channels={"sms": channel}, batch=batch)  # type: ignore[dict-item]
    result = run(engine, random.Random(1), RunOptions(max_time=max_time), clock=channel.clock)
    assert len({i for i, _ in channel.sent}) == len(channel.sent)  # each message once
    return store, result.passes, channel


def test_a_slow_pass_is_cut_and_each_send_stamped_near_when_it_went(tmp_path: Path) -> None:
    assert PASS_TIME.total_seconds() == 60  # the arithmetic below
    store, passes, _ = _run(tmp_path, 10)
    times = sent_times(store)
    assert len(times) == 10
    assert passes >= 3  # 10 sends of 20 s: 200 s, in passes of at most 80 s
    # stamped with their own pass's `now`, never more than a pass behind the clock
    assert times[-1] - times[0] >= timedelta(seconds=120)
    with store.read() as s:
        beats = [w.heartbeat_at for w in s.exec(select(Worker))]
    assert max(beats) == times[-1]  # the last pass beat when it started, not the first


def test_max_time_holds_inside_a_pass(tmp_path: Path) -> None:
    store, passes, _ = _run(tmp_path, 10, max_time=timedelta(seconds=90))
    # pass 1 (t=0): sends at 20 and 40 (a batch), then 60 (>= 60: the batch's other claim is
    # released); pass 2 (t=60, ends at 90): sends at 80 and 100 (>= 90), and the run is over
    assert len(sent_times(store)) == 5
    assert passes == 2


def test_a_batch_of_slow_sends_is_cut_when_the_pass_time_is_up(tmp_path: Path) -> None:
    """One batch holds all 10 messages (200 s of sends): the pass releases the batch's rest
    after the send that reaches `PASS_TIME`, so no send is stamped (and no heartbeat beaten)
    more than a pass and a send before it went; before, one pass sent all 10 stamped at 0."""
    store, passes, channel = _run(tmp_path, 10, batch=100)
    assert passes >= 4  # 3 sends of 20 s reach 60 s: 3 + 3 + 3 + 1
    with store.read() as s:
        stamped = {m.id: m.sent_at for m in s.exec(select(Message)) if m.sent_at is not None}
    assert len(stamped) == 10
    lag = max(went - stamped[i] for i, went in channel.sent)
    assert lag <= PASS_TIME + SEND_TIME
    assert lag >= SEND_TIME  # a send is stamped with its pass's start, not when it went

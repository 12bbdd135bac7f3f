"""The runner `send` and `daemon` share: lock, engine and close in one object, and a loop of
passes that needs no scheduler of its own."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from campaignctl.config import load
from campaignctl.daemon import Daemon, EventLog, daemon_status
from campaignctl.errors import LockHeldError
from campaignctl.runner import Runner, RunOptions
from campaignctl.store import Store
from tests.support import add_leads, project

PACED = """
[channels.sms]
provider = "outbox"
kind = "sms"
per_second = 1

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
channel = "sms"
body = "Hi {{ lead.first_name }}"
"""


def test_the_runner_holds_the_lock_and_closes_everything(tmp_path: Path) -> None:
    cfg = project(tmp_path, PACED)
    store = Store.for_config(cfg)
    add_leads(store, 3)
    with Runner(cfg, store) as runner:
        with pytest.raises(LockHeldError), Runner(cfg, store):
            pass  # a second sender on the same database is refused at once
        sent: list[int] = []

        def stop_after_one() -> bool:
            return bool(sent)

        options = RunOptions(should_stop=stop_after_one, on_pass=lambda r: sent.append(1))
        t0 = time.monotonic()
        result = runner.run(options)
    # A stop asked for while the loop waits for the next paced slot ends the run at once.
    assert result.passes == 1
    assert result.total.total("sent") == 1
    assert time.monotonic() - t0 < 0.9
    with Runner(cfg, store):  # the lock was released on the way out
        pass
    store.close()


def test_a_daemon_tick_starts_no_scheduler_inside_the_daemons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apscheduler.schedulers.base import BaseScheduler

    made: list[str] = []
    init = BaseScheduler.__init__

    def counted(self: BaseScheduler, *args: object, **kwargs: object) -> None:
        made.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(BaseScheduler, "__init__", counted)
    cfg = project(tmp_path, PACED)
    add_leads(Store.for_config(cfg), 1)
    out = io.StringIO()
    store = Store.for_config(cfg)
    d = Daemon(load(cfg.path), store, EventLog(out=out))

    def stop_after_a_tick() -> None:
        if daemon_status(store)["last_pass_at"] is not None:
            d.request_stop()

    d.on_change = stop_after_a_tick
    d.run()
    assert made == ["BlockingScheduler"]  # the daemon's own, and none per tick
    assert out.getvalue().splitlines()[-1].endswith("daemon stopped")

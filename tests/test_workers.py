"""Workers (issue 16): each sending process registers and beats; a live one recovers the claims of
a dead one (uncertain, then reconciled, never resent blindly); jobs that must run once are
guarded in the database. Time is a parameter: the tests travel, never sleep."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from campaignctl.channels.base import Reconciled
from campaignctl.config import Config
from campaignctl.daemon import daemon_status
from campaignctl.engine import Engine, PassResult
from campaignctl.engine.recovery import WORKER_TIMEOUT
from campaignctl.runner import Runner, RunOptions
from campaignctl.store import Store, locks, meta, workers
from tests.support import T0, ScriptedChannel, add_leads, messages, project

SMS = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.welcome]
status = "active"

[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name }}"
"""

pytestmark = pytest.mark.usefixtures("db_url")  # on SQLite and on PostgreSQL

#: Another host: its pids mean nothing here, so only its heartbeat tells whether it lives.
FAR = "far-host:4242:99"
NEAR = "near-host:4343:99"


def _engine(
    cfg: Config, store: Store, worker: str, channel: ScriptedChannel | None = None
) -> Engine:
    channels = {"sms": channel} if channel is not None else None
    return Engine(cfg, store, channels=channels, worker=worker, enrol_every=timedelta(0))


def _claimed_by_far(tmp_path: Path, leads: int = 3) -> tuple[Config, Store]:
    """A project whose `leads` messages the far worker claimed at T0 and never recorded (it
    died mid-send)."""
    cfg = project(tmp_path, SMS)
    store = Store.for_config(cfg)
    add_leads(store, leads)
    far = _engine(cfg, store, FAR, ScriptedChannel("sms"))
    far.enrol(T0)
    assert len(far._claim(T0, random.Random(0), 10, PassResult())) == leads
    return cfg, store


def test_a_worker_registers_and_beats_in_its_claims(tmp_path: Path) -> None:
    cfg = project(tmp_path, SMS)
    store = Store.for_config(cfg)
    add_leads(store, 2)
    eng = _engine(cfg, store, NEAR, ScriptedChannel("sms"))
    eng.run_pass(T0, random.Random(0))
    with store.read() as s:
        assert [(w.id, w.host, w.pid, w.heartbeat_at) for w in workers.listing(s)] == [
            (NEAR, "near-host", 4343, T0)
        ]
    eng.run_pass(T0 + timedelta(minutes=1), random.Random(0))
    with store.read() as s:
        ((row,),) = [(w.heartbeat_at,) for w in workers.listing(s)]
        assert row == T0 + timedelta(minutes=1)
        assert {m.claimed_by for m in messages(store)} == {NEAR}
    store.close()


def test_a_dead_workers_claims_are_recovered_after_the_timeout_and_reconciled(
    tmp_path: Path,
) -> None:
    cfg, store = _claimed_by_far(tmp_path)
    assert {m.state for m in messages(store)} == {"sending"}
    channel = ScriptedChannel("sms", reconcile_answer=Reconciled.SENT)
    near = _engine(cfg, store, NEAR, channel)
    # within the timeout the far worker may still be sending: its claims are left alone
    near.run_pass(T0 + WORKER_TIMEOUT, random.Random(0))
    assert {m.state for m in messages(store)} == {"sending"}
    # past it, they become uncertain and are reconciled: the provider has them, so they are
    # recorded sent without a second send
    near.run_pass(T0 + WORKER_TIMEOUT + timedelta(seconds=1), random.Random(0))
    rows = messages(store)
    assert {m.state for m in rows} == {"sent"}
    assert channel.attempts == []
    with store.read() as s:
        assert [w.id for w in workers.listing(s)] == [NEAR]  # the dead one's row is gone
    store.close()


def test_claims_the_provider_never_got_go_again_once(tmp_path: Path) -> None:
    cfg, store = _claimed_by_far(tmp_path, leads=2)
    channel = ScriptedChannel("sms", reconcile_answer=Reconciled.NOT_SENT)
    near = _engine(cfg, store, NEAR, channel)
    near.run_pass(T0 + WORKER_TIMEOUT + timedelta(seconds=1), random.Random(0))
    assert {m.state for m in messages(store)} == {"sent"}
    assert sorted(m.id for m in channel.sent) == [1, 2]  # each once
    store.close()


def test_a_live_workers_heartbeat_keeps_its_claims(tmp_path: Path) -> None:
    cfg, store = _claimed_by_far(tmp_path)
    with store.write() as s:  # the far worker beats (its daemon's tick) at T0 + 4 min
        workers.beat(s, FAR, "far-host", 4242, T0 + timedelta(minutes=4))
    near = _engine(cfg, store, NEAR, ScriptedChannel("sms", reconcile_answer=Reconciled.SENT))
    near.run_pass(T0 + WORKER_TIMEOUT + timedelta(minutes=1), random.Random(0))
    assert {m.state for m in messages(store)} == {"sending"}
    near.run_pass(
        T0 + timedelta(minutes=4) + WORKER_TIMEOUT + timedelta(seconds=1), random.Random(0)
    )
    assert {m.state for m in messages(store)} == {"sent"}
    store.close()


def test_an_outbox_message_is_reconciled_only_on_the_host_that_claimed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, store = _claimed_by_far(tmp_path, leads=1)
    # the far worker wrote the file into its own outbox folder before it died: a worker of
    # another host cannot see that folder, so it must not take "no file" for "never sent"
    near = _engine(cfg, store, NEAR)  # the real outbox channel (host-local)
    near.run_pass(T0 + WORKER_TIMEOUT + timedelta(seconds=1), random.Random(0))
    (m,) = messages(store)
    assert m.state == "uncertain"
    assert not list((tmp_path / "outbox").glob("*.json"))
    # the far host's next worker (restarted) reconciles it: no file there, so it goes now
    monkeypatch.setenv("CAMPAIGNCTL_HOST", "far-host")
    again = _engine(cfg, store, "far-host:5555:1")
    again.run_pass(T0 + WORKER_TIMEOUT + timedelta(seconds=2), random.Random(0))
    (m,) = messages(store)
    assert m.state == "sent"
    assert len(list((tmp_path / "outbox").glob("*.json"))) == 1
    store.close()


def test_a_runner_leaving_mid_send_leaves_its_claims_uncertain_and_its_row_gone(
    tmp_path: Path,
) -> None:
    cfg = project(tmp_path, SMS)
    store = Store.for_config(cfg)
    add_leads(store, 2)
    with Runner(cfg, store, lock=False, clock=lambda: T0) as runner:
        runner.engine.enrol(T0)
        runner.engine._claim(T0, random.Random(0), 10, PassResult())
        runner.beat(T0)
        with store.read() as s:
            assert [w.id for w in workers.listing(s)] == [runner.engine.worker]
    assert {m.state for m in messages(store)} == {"uncertain"}
    with store.read() as s:
        assert workers.listing(s) == []
    # the next run reconciles them (the outbox has no file: they go once)
    with Runner(cfg, store, lock=False, clock=lambda: T0) as runner:
        runner.run(RunOptions())
    assert {m.state for m in messages(store)} == {"sent"}
    assert len(list((tmp_path / "outbox").glob("*.json"))) == 2
    store.close()


BLAST = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.news]
kind = "blast"
status = "active"

[[campaigns.news.steps]]
name = "only"
channel = "sms"
body = "News"
"""


def test_a_blast_enrols_once_even_when_a_second_process_saw_it_unenrolled(
    tmp_path: Path,
) -> None:
    cfg = project(tmp_path, BLAST)
    store = Store.for_config(cfg)
    add_leads(store, 2)
    one, two = _engine(cfg, store, NEAR), _engine(cfg, store, FAR)
    assert one.enrol(T0) == 2
    add_leads(store, 1, start=5)  # a lead who came after the blast went out
    # the second process read "not enrolled yet" before the first committed: its own write
    # transaction looks again under the campaign's lock and enrols nobody
    camp = cfg.campaigns["news"]
    assert two._enrol_campaign("news", camp, T0, None) == 0
    assert len(messages(store)) == 2
    store.close()


ON_IMPORT = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.nurture]
status = "active"
enrol_on = ["import"]

[[campaigns.nurture.steps]]
name = "only"
channel = "sms"
body = "Hello"
"""


def test_enrol_on_events_read_by_another_process_meanwhile_enrol_nobody_twice(
    tmp_path: Path,
) -> None:
    cfg = project(tmp_path, ON_IMPORT)
    store = Store.for_config(cfg)
    ids = add_leads(store, 2)
    with store.write() as s:  # another process read the events up to 7 and moved on
        meta.set_enrol_on_cursor(s, "nurture", 7, T0)
    eng = _engine(cfg, store, NEAR)
    camp = cfg.campaigns["nurture"]
    # this one read them from the old cursor (0): under the lock it sees the cursor moved
    got = eng._enrol_campaign("nurture", camp, T0, None, ids=ids, cursor=9, read_from=0)
    assert got == 0
    assert messages(store) == []
    with store.read() as s:
        assert meta.enrol_on_cursor(s, "nurture") == 7
    assert eng._enrol_campaign("nurture", camp, T0, None, ids=ids, cursor=9, read_from=7) == 2
    store.close()


def test_status_without_a_send_lock_says_the_daemon_runs_while_a_worker_beats(
    pg_url: str,
) -> None:
    store = Store(pg_url)
    assert store.send_lock() is None
    assert daemon_status(store)["running"] is False
    now = datetime.now(UTC)
    with store.write() as s:
        workers.beat(s, FAR, "far-host", 4242, now)
    assert daemon_status(store)["running"] is True
    with store.write() as s:  # its heartbeat stopped long ago: dead
        workers.beat(s, FAR, "far-host", 4242, now - WORKER_TIMEOUT - timedelta(minutes=1))
    assert daemon_status(store)["running"] is False
    store.close()


def test_lock_keys_are_stable_signed_64_bit_numbers() -> None:
    key = locks.key_of(locks.channel("sms"))
    assert key == locks.key_of("channel:sms")
    assert -(2**63) <= key < 2**63
    assert key != locks.key_of(locks.channel("email"))
    assert key == 7543897567130596387  # a new version must take the same lock as the old one


def test_values_written_once_keep_the_first_writers(tmp_path: Path) -> None:
    cfg = project(tmp_path, SMS)
    store = Store.for_config(cfg)
    with store.write() as s:
        first = meta.ensure_suppression_key(s, T0)
    with store.write() as s:
        assert meta.ensure_suppression_key(s, T0) == first
        kept = meta.set_warmup_start(s, "sms", T0, T0)
        assert meta.set_warmup_start(s, "sms", T0 + timedelta(hours=1), T0) == kept == T0
    store.close()

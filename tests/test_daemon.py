"""`campaignctl daemon` as a real process against the outbox channel and the Twilio fake.

Every wait polls the database, the outbox or the log with a deadline; nothing sleeps a fixed
time. The campaign file uses `tick = "1s"` and `sync_interval = "1s"`.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from campaignctl.config import load
from campaignctl.daemon import Daemon, EventLog
from campaignctl.store import Event, Meta, Store
from tests.support import REPO, add_leads, write_project
from tests.test_sync import SMS_CAMPAIGN, messages_where

OUR_SMS = "+15005550006"
DAEMON = '[daemon]\ntick = "1s"\nsync_interval = "1s"\n'

PROMO_STEPS = """
[[campaigns.promo.steps]]
name = "offer"
channel = "email"
subject = "An offer for {{ lead.first_name }}"
body = "Hi {{ lead.first_name }}, here it is."
"""
PROMO = '\n[campaigns.promo]\nstatus = "active"\n' + PROMO_STEPS
# the SMS sequence of the sync tests, its second step due 4 s after the first
CAMPAIGNS = SMS_CAMPAIGN.replace('delay = "1d"', 'delay = "4s"') + PROMO.replace(
    '"active"', '"paused"'
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "CAMPAIGNCTL_DEBUG": ""}


def campaignctl(folder: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "campaignctl", "-C", str(folder), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Running:
    """A daemon process whose output goes to a file the test can read while it runs."""

    def __init__(self, folder: Path, name: str = "daemon") -> None:
        self.log_path = folder / f"{name}.log"
        self.out = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "campaignctl", "-C", str(folder), "daemon"],
            env=_env(),
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, cond: Callable[[], Any], what: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = cond()
            if value:
                return value
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {what} (exit {self.proc.poll()}); daemon log:\n{self.log}")

    def stop(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def run(folder: Path, name: str = "daemon") -> Running:
        r = Running(folder, name)
        started.append(r)
        return r

    yield run
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait(10)
        r.out.close()


def _outbox_matches_database(folder: Path, store: Store, channel: str = "email") -> list[int]:
    """Every sent outbox message has exactly its file, and no other message has one."""
    sent = sorted(m.id for m in messages_where(store, channel=channel, state="sent") if m.id)
    files = sorted(int(p.stem) for p in (folder / "outbox").glob("*.eml"))
    assert files == sent
    assert not [m for m in messages_where(store) if m.state in ("sending", "uncertain")]
    return sent


def test_daemon_sends_obeys_stop_reloads_and_stops_cleanly(tmp_path, fake_twilio, start):
    write_project(
        tmp_path,
        f"""\
[channels.email]
provider = "outbox"

[channels.sms]
provider = "twilio"
from = "{OUR_SMS}"
api_base = "{fake_twilio.url}"
""",
        DAEMON + CAMPAIGNS,
    )
    store = Store.for_config(load(tmp_path / "campaigns.toml"))
    add_leads(store, 3)
    phones = [f"+1212555{i:04d}" for i in range(3)]

    d = start(tmp_path)
    # it sends on its ticks
    d.wait_for(lambda: len(fake_twilio.created) >= 3, "hello SMS to the three leads")
    assert sorted(c["To"] for c in fake_twilio.created) == phones

    # a STOP that arrives in the fake is synced before the lead's next SMS is due
    fake_twilio.receive(phones[0], OUR_SMS, "STOP")

    # one sender per database: a concurrent send and a second daemon exit 75 naming the pid
    r = campaignctl(tmp_path, "send")
    assert r.returncode == 75, r.stderr
    assert f"pid {d.proc.pid}" in r.stderr
    r = campaignctl(tmp_path, "daemon")
    assert r.returncode == 75, r.stderr
    assert f"(pid {d.proc.pid})" in r.stderr
    assert "one daemon per database" in r.stderr

    lead0 = messages_where(store, step="hello")[0].lead_id

    def optout_recorded() -> bool:
        with store.read() as s:
            return bool(s.exec(select(Event).where(Event.kind == "optout")).first())

    d.wait_for(optout_recorded, "the STOP recorded by the daemon's sync")
    d.wait_for(
        lambda: len([m for m in messages_where(store, step="nudge") if m.state == "sent"]) == 2,
        "the nudge to the two other leads",
    )
    nudges = {m.lead_id: m for m in messages_where(store, step="nudge")}
    assert nudges[lead0].state == "skipped"
    assert "opted out" in (nudges[lead0].reason or "")
    assert len(fake_twilio.created) == 5  # 3 hello + 2 nudges, none to the lead who said STOP
    assert [c["To"] for c in fake_twilio.created].count(phones[0]) == 1
    assert "sync sms optout=1" in d.log

    # an edited campaign file is reloaded: resuming promo sends its emails
    toml = tmp_path / "campaigns.toml"
    toml.write_text(
        toml.read_text().replace(
            '[campaigns.promo]\nstatus = "paused"', '[campaigns.promo]\nstatus = "active"'
        )
    )
    d.wait_for(lambda: len(list((tmp_path / "outbox").glob("*.eml"))) == 3, "promo emails")
    assert "config reloaded campaigns.toml" in d.log

    # an invalid edit is logged with its key path and the old file kept: passes go on
    before = json.loads(campaignctl(tmp_path, "status", "--format", "json").stdout)["daemon"]
    assert before["running"] is True
    assert before["pid"] == str(d.proc.pid)
    toml.write_text(toml.read_text().replace('status = "active"', 'status = "bogus"', 1))
    d.wait_for(lambda: "campaigns.welcome.status" in d.log, "the invalid edit logged")
    assert "keeping the previous campaign file" in d.log

    def later_pass() -> bool:
        with store.read() as s:
            beat = s.get(Meta, "daemon.last_pass_at")
        return beat is not None and beat.value > before["last_pass_at"]

    d.wait_for(later_pass, "another pass with the invalid file in place")
    assert d.proc.poll() is None
    toml.write_text(toml.read_text().replace('status = "bogus"', 'status = "active"', 1))

    # SIGTERM: exit 0; nothing lost, nothing repeated
    assert d.stop() == 0
    assert d.log.rstrip().endswith("daemon stopped")
    assert len(_outbox_matches_database(tmp_path, store)) == 3
    sms_sent = messages_where(store, channel="sms", state="sent")
    assert len(sms_sent) == len(fake_twilio.created) == 5
    assert {m.provider_id for m in sms_sent} == {
        m["sid"] for m in fake_twilio.messages if m["direction"] == "outbound-api"
    }
    after = json.loads(campaignctl(tmp_path, "status", "--format", "json").stdout)["daemon"]
    assert after["running"] is False
    assert after["stopped_at"]


def test_sigterm_mid_run_loses_and_repeats_nothing(tmp_path, start):
    write_project(
        tmp_path,
        '[channels.email]\nprovider = "outbox"\nper_second = 8\n',
        DAEMON + PROMO,
    )
    store = Store.for_config(load(tmp_path / "campaigns.toml"))
    add_leads(store, 16)
    outbox = tmp_path / "outbox"

    d = start(tmp_path)
    d.wait_for(lambda: list(outbox.glob("*.eml")), "the first email")
    assert d.stop() == 0  # the first SIGTERM finishes the message in flight
    first = _outbox_matches_database(tmp_path, store)
    assert 0 < len(first) < 16  # stopped part way: 8 a second for 2 s

    d2 = start(tmp_path, "daemon2")
    d2.wait_for(lambda: len(list(outbox.glob("*.eml"))) == 16, "the remaining emails")
    assert d2.stop() == 0
    sent = _outbox_matches_database(tmp_path, store)
    assert len(sent) == 16
    assert len({m.lead_id for m in messages_where(store, state="sent")}) == 16
    # one greppable line per event, as docs/operations.md shows them
    sends = [ln for ln in d2.log.splitlines() if " send " in ln]
    assert sends
    for line in sends:
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ send promo/offer email lead=\d+ message=\d+ sent",
            line,
        ), line


def test_json_log_lines(tmp_path, start):
    write_project(
        tmp_path,
        '[channels.email]\nprovider = "outbox"\n',
        DAEMON + PROMO,
    )
    store = Store.for_config(load(tmp_path / "campaigns.toml"))
    add_leads(store, 1)
    log = tmp_path / "json.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "campaignctl",
                "-C",
                str(tmp_path),
                "daemon",
                "--log-format",
                "json",
            ],
            env=_env(),
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 20
            while '"outcome": "sent"' not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    lines = [json.loads(ln) for ln in log.read_text().splitlines()]
    sent = [ln for ln in lines if ln["event"] == "send"]
    assert sent[0]["outcome"] == "sent"
    assert (sent[0]["campaign"], sent[0]["step"], sent[0]["channel"]) == ("promo", "offer", "email")
    assert sent[0]["ts"].endswith("Z")
    assert lines[-1]["message"] == "stopped"


# ---------------------------------------------------------------- in-process: the file reload


def _daemon(folder: Path) -> tuple[Daemon, io.StringIO]:
    out = io.StringIO()
    cfg = load(folder / "campaigns.toml")
    return Daemon(cfg, Store.for_config(cfg), EventLog(out=out)), out


def test_reload_applies_a_valid_edit_and_keeps_the_old_config_on_an_invalid_one(project):
    toml = project / "campaigns.toml"
    d, out = _daemon(project)
    assert d.reload_if_changed() is False  # unchanged
    toml.write_text(toml.read_text().replace('status = "active"', 'status = "paused"'))
    assert d.reload_if_changed() is True
    assert d.cfg.campaigns["welcome"].status == "paused"
    assert out.getvalue().split(" ", 1)[1] == "config reloaded " + str(toml) + "\n"

    good = d.cfg
    toml.write_text(toml.read_text().replace('status = "paused"', 'status = "bogus"'))
    assert d.reload_if_changed() is False
    assert d.cfg is good
    line = out.getvalue().splitlines()[-1]
    assert "config invalid: " in line
    assert "campaigns.welcome.status" in line
    assert line.endswith("(hint: run `campaignctl check` to list every problem)")
    assert d.reload_if_changed() is False  # the same bad file is not reported again
    assert len(out.getvalue().splitlines()) == 2

    toml.write_text(toml.read_text().replace("[settings]", '[settings]\ndatabase = "other.db"'))
    toml.write_text(toml.read_text().replace('status = "bogus"', 'status = "active"'))
    assert d.reload_if_changed() is False
    assert "settings.database changed" in out.getvalue().splitlines()[-1]
    assert d.cfg is good


def test_status_without_a_daemon(project, cli):
    r = cli("-C", project, "status")
    assert "daemon: not running" in r.stdout
    assert "sms (outbox): the outbox writes files; nothing comes back" in r.stdout
    d = json.loads(cli("-C", project, "status", "--format", "json").stdout)["daemon"]
    assert d == {
        "running": False,
        "pid": None,
        "started_at": None,
        "last_pass_at": None,
        "last_sync_at": None,
        "stopped_at": None,
    }

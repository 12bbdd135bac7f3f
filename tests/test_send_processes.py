"""Real `send` processes: two at once on one database, one killed mid-run, one locked out."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from campaignctl.config import load
from campaignctl.store import Store
from tests.support import REPO, add_leads, campaign_toml

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _config(folder: Path, name: str, outbox: str, limits: str) -> Path:
    path = folder / name
    path.write_text(
        campaign_toml(tz="UTC", region=None, database="shared.db")
        + f"""
[channels.sms]
provider = "outbox"
kind = "sms"
path = "{outbox}"
{limits}

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
channel = "sms"
body = "Hi {{{{ lead.first_name }}}}"
"""
    )
    return path


def _send(config: Path, *args: str, quiet: bool = True) -> subprocess.Popen[str]:
    flags = ["--quiet"] if quiet else []
    return subprocess.Popen(
        [sys.executable, "-m", "campaignctl", "--config", str(config), "send", *flags, *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(db: Path) -> list[tuple[int, str, str | None, str | None]]:
    con = sqlite3.connect(db)
    try:
        return list(con.execute("SELECT id, state, sent_at, claimed_by FROM message ORDER BY id"))
    finally:
        con.close()


def _setup(tmp_path: Path, leads: int, limits: str, outboxes: tuple[str, ...]) -> list[Path]:
    configs = [_config(tmp_path, f"c{i}.toml", o, limits) for i, o in enumerate(outboxes)]
    store = Store.for_config(load(configs[0]))
    add_leads(store, leads)
    store.close()
    return configs


def test_two_sends_at_once_send_each_message_once_within_joint_limits(tmp_path: Path) -> None:
    # Same database, separate outbox folders: a message sent by both would show up twice.
    # 150 messages at 20 a second take 7.5 s; the second process starts once the first has
    # sent one, so however slowly a loaded machine starts them, they overlap
    limits = "daily_limit = 150\nper_second = 20"
    a, b = _setup(tmp_path, 200, limits, ("out-a", "out-b"))
    first = _send(a, "--no-lock")
    deadline = time.monotonic() + 60
    while not any((tmp_path / "out-a").glob("*.json")):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    procs = [first, _send(b, "--no-lock")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    files_a = {f.name for f in (tmp_path / "out-a").glob("*.json")}
    files_b = {f.name for f in (tmp_path / "out-b").glob("*.json")}
    assert files_a, "the first process sent nothing"
    assert files_b, "the second process sent nothing: they did not overlap"
    assert not files_a & files_b
    rows = _rows(tmp_path / "shared.db")
    sent = [r for r in rows if r[1] == "sent"]
    assert len(sent) == 150  # the daily limit, held by both together
    assert len(files_a | files_b) == 150
    assert {f"{r[0]}.json" for r in sent} == files_a | files_b
    assert len({r[3] for r in sent}) == 2
    times = sorted(datetime.fromisoformat(str(r[2])) for r in sent)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.05 - 1e-6  # per_second = 20, across both processes


def test_send_killed_mid_run_then_rerun_sends_each_message_exactly_once(tmp_path: Path) -> None:
    (config,) = _setup(tmp_path, 60, "per_second = 20", ("outbox",))
    outbox = tmp_path / "outbox"
    proc = _send(config)
    deadline = time.monotonic() + 60
    while len(list(outbox.glob("*.json"))) < 15:
        assert time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in outbox.glob("*.json")}
    assert 15 <= len(before) < 60
    again = _send(config)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, (out, err)
    after = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in outbox.glob("*.json")}
    assert len(after) == 60
    # nothing the killed run wrote was written again
    assert {k: after[k] for k in before} == before
    rows = _rows(tmp_path / "shared.db")
    assert {r[1] for r in rows} == {"sent"}
    assert {f"{r[0]}.json" for r in rows} == set(after)


def test_second_send_exits_75_at_once_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    (config,) = _setup(tmp_path, 40, "per_second = 4", ("outbox",))
    first = _send(config)
    lock = tmp_path / "shared.db.send.lock"
    deadline = time.monotonic() + 30
    while not list((tmp_path / "outbox").glob("*.json")):
        assert time.monotonic() < deadline, first.communicate()
        time.sleep(0.02)
    started = time.monotonic()
    second = _send(config, quiet=False)  # quiet would say nothing (cron's overlap is no news)
    _out, err = second.communicate(timeout=30)
    assert second.returncode == 75
    assert time.monotonic() - started < 10
    assert f"campaignctl: error: {lock}: another process holds the send lock" in err
    assert "hint:" in err
    first.send_signal(signal.SIGTERM)  # first stop: finish the message in flight, then exit
    first.communicate(timeout=30)
    assert first.returncode == 0
    assert {r[1] for r in _rows(tmp_path / "shared.db")} <= {"sent", "pending"}

"""`send`, `plan` and `status` from the command line (in-process)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import Result

from campaignctl.engine import Engine
from campaignctl.locking import FileLock
from campaignctl.store import Store
from tests.support import ScriptedChannel, add_leads, messages, project

Cli = Callable[..., Result]

BASIC = """
[channels.sms]
provider = "outbox"
kind = "sms"
daily_limit = 3

[campaigns.welcome]
status = "active"
[[campaigns.welcome.steps]]
name = "hello"
channel = "sms"
body = "Hi {{ lead.first_name }}"

[campaigns.draft]
[[campaigns.draft.steps]]
channel = "sms"
body = "not yet"
"""


def _setup(tmp_path: Path, leads: int = 5, body: str = BASIC) -> Store:
    cfg = project(tmp_path, body)
    store = Store.for_config(cfg)
    add_leads(store, leads)
    return store


def test_send_prints_plain_lines_and_a_summary(tmp_path: Path, cli: Cli) -> None:
    store = _setup(tmp_path)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "sent welcome/hello via sms to +12125550000 (message 1)"
    assert lines[-1].startswith("summary: sent 3, failed 0, skipped 0")
    assert "deferred 2 by limit" in lines[-1]
    assert "next due" in lines[-1]
    assert len(list((tmp_path / "outbox").glob("*.json"))) == 3
    assert {m.campaign for m in messages(store)} == {"welcome"}  # drafts send nothing


def test_send_quiet_prints_nothing_when_all_went_well(tmp_path: Path, cli: Cli) -> None:
    """cron mails whatever a job prints: a quiet run that sent (and deferred) prints nothing."""
    store = _setup(tmp_path)
    res = cli("-C", tmp_path, "send", "--quiet")
    assert res.exit_code == 0
    assert (res.stdout, res.stderr) == ("", "")
    assert sum(1 for m in messages(store) if m.state == "sent") == 3


def test_send_quiet_still_reports_a_permanent_failure_on_stderr(tmp_path: Path, cli: Cli) -> None:
    body = BASIC.replace("Hi {{ lead.first_name }}", "Hi {{ lead.nickname }}")
    _setup(tmp_path, leads=1, body=body)
    res = cli("-C", tmp_path, "send", "--quiet")
    assert res.exit_code == 1
    assert res.stdout == ""
    assert res.stderr.startswith("campaignctl: error: welcome/hello via sms to +12125550000")
    assert "nickname" in res.stderr
    assert "summary: sent 0, failed 1" in res.stderr


def test_send_limit_and_campaign_filter(tmp_path: Path, cli: Cli) -> None:
    store = _setup(tmp_path)
    res = cli("-C", tmp_path, "send", "--limit", "2", "--campaign", "welcome", "-q")
    assert res.exit_code == 0, res.stderr
    assert sum(1 for m in messages(store) if m.state == "sent") == 2
    res = cli("-C", tmp_path, "send", "--campaign", "welcom")
    assert res.exit_code == 2
    assert "no campaign named 'welcom'; did you mean 'welcome'?" in res.stderr


def test_send_dry_run_shows_and_writes_nothing(tmp_path: Path, cli: Cli) -> None:
    store = _setup(tmp_path)
    res = cli("-C", tmp_path, "send", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "+12125550002" in res.stdout
    assert "dry run: would send 3" in res.stdout
    assert messages(store) == []
    assert not (tmp_path / "outbox").exists()


def test_send_exits_75_when_the_lock_is_held(tmp_path: Path, cli: Cli) -> None:
    store = _setup(tmp_path)
    assert store.path is not None
    with FileLock(store.path.with_name(store.path.name + ".send.lock")):
        res = cli("-C", tmp_path, "send")
    assert res.exit_code == 75
    assert "another process holds the send lock" in res.stderr
    assert res.stderr.splitlines()[1].startswith("hint: ")
    assert messages(store) == []


def test_quiet_send_that_finds_the_lock_held_says_nothing(tmp_path: Path, cli: Cli) -> None:
    """cron's `send --quiet` overlapping a long run: exit 75 for a wrapper, no mail from cron."""
    store = _setup(tmp_path)
    assert store.path is not None
    with FileLock(store.path.with_name(store.path.name + ".send.lock")):
        res = cli("-C", tmp_path, "send", "--quiet")
    assert (res.exit_code, res.stdout, res.stderr) == (75, "", "")
    assert messages(store) == []


def test_send_bad_max_time_is_a_usage_error(tmp_path: Path, cli: Cli) -> None:
    _setup(tmp_path)
    res = cli("-C", tmp_path, "send", "--max-time", "ten minutes")
    assert res.exit_code == 2
    assert res.stderr.startswith("campaignctl: error: --max-time: invalid duration")


def test_send_exits_1_when_a_message_fails(tmp_path: Path, cli: Cli) -> None:
    body = BASIC.replace("Hi {{ lead.first_name }}", "Hi {{ lead.nickname }}")
    _setup(tmp_path, leads=1, body=body)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 1
    assert "nickname" in res.stderr
    assert "summary: sent 0, failed 1" in res.stdout


def test_status_reports_counts_per_step(tmp_path: Path, cli: Cli) -> None:
    from campaignctl.channels.base import ChannelError, ErrorKind

    store = _setup(tmp_path, leads=2)
    cfg = project(tmp_path, BASIC)
    ch = ScriptedChannel(
        "sms", errors={"+12125550000": [ChannelError(ErrorKind.PERMANENT, "bad", code="21211")]}
    )
    Engine(cfg, store, channels={"sms": ch}).run_pass(
        datetime.now(UTC) - timedelta(minutes=1), random.Random(1)
    )
    res = cli("-C", tmp_path, "status", "--format", "json")
    step = json.loads(res.stdout)["campaigns"][0]["steps"][0]
    assert (step["sent"], step["failed"], step["pending"]) == (1, 1, 0)
    res = cli("-C", tmp_path, "status", "welcome")
    assert res.exit_code == 0
    assert "welcome (sequence, active): 2 enrolled" in res.stdout
    res = cli("-C", tmp_path, "status", "nope")
    assert res.exit_code == 2


def test_plan_table(tmp_path: Path, cli: Cli) -> None:
    _setup(tmp_path, leads=7)
    res = cli("-C", tmp_path, "plan", "--days", "4")
    assert res.exit_code == 0, res.stderr
    assert "sends per day (UTC)" in res.stdout
    assert "(day 3)" in res.stdout  # 3 + 3 + 1


def test_send_max_time_stops_a_paced_run(tmp_path: Path, cli: Cli) -> None:
    store = _setup(tmp_path, leads=50, body=BASIC.replace("daily_limit = 3", "per_second = 5"))
    res = cli("-C", tmp_path, "send", "--max-time", "1s")
    assert res.exit_code == 0, res.stderr
    sent = sum(1 for m in messages(store) if m.state == "sent")
    assert 1 <= sent <= 6  # one every 200 ms for a second
    assert f"summary: sent {sent}," in res.stdout


def test_send_to_an_unwritable_outbox_names_the_channel_and_path(tmp_path: Path, cli: Cli) -> None:
    """Issue 9 #14: the temporary error says which channel and which path."""
    _setup(tmp_path, leads=1)
    (tmp_path / "outbox").write_text("a file where the folder should be")
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 75
    first = res.stderr.splitlines()[0]
    assert first.startswith("campaignctl: error: channel sms: cannot write ")
    assert str(Path("outbox") / "1.json") in first
    assert first.endswith(": a temporary provider error, the messages will be retried")
    assert res.stderr.splitlines()[1].startswith("hint: check that ")


def test_plan_says_why_a_draft_sends_nothing(tmp_path: Path, cli: Cli) -> None:
    """Issue 9 #26."""
    _setup(tmp_path, leads=1)
    res = cli("-C", tmp_path, "plan", "--days", "1")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == (
        "draft: draft, sends nothing; start it with campaignctl campaign start draft"
    )
    res = cli("-C", tmp_path, "plan", "--days", "1", "--format", "json")
    assert json.loads(res.stdout)["not_sending"] == [
        {
            "name": "draft",
            "status": "draft",
            "hint": "start it with campaignctl campaign start draft",
        }
    ]
    res = cli("-C", tmp_path, "plan", "--days", "1", "--campaign", "welcome")
    assert "sends nothing" not in res.stdout


TWO_AUDIENCES = """
[channels.sms]
provider = "outbox"
kind = "sms"

[campaigns.all]
status = "active"
[[campaigns.all.steps]]
channel = "sms"
body = "Hi {{ lead.first_name }}"

[campaigns.budget]
status = "active"
audience = "lead.budget|int <= 400000"
[[campaigns.budget.steps]]
channel = "sms"
body = "A house for {{ lead.budget }}"
"""


def test_an_audience_failing_on_some_leads_skips_them_and_sends_the_rest(
    tmp_path: Path, cli: Cli
) -> None:
    store = _setup(tmp_path, leads=2, body=TWO_AUDIENCES)  # no budget: cannot be evaluated
    add_leads(store, 1, start=10, attrs={"budget": "300000"})
    add_leads(store, 1, start=11, attrs={"budget": "900000"})
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 0, res.stderr
    sent = [(m.campaign, m.lead_id) for m in messages(store) if m.state == "sent"]
    assert sorted(c for c, _ in sent) == ["all"] * 4 + ["budget"]
    assert "summary: sent 5, failed 0" in res.stdout
    assert (
        "campaignctl: warning: budget: 2 lead(s) skipped: campaigns.budget.audience: "
        "cannot evaluate 'lead.budget|int <= 400000'"
    ) in res.stderr
    status = json.loads(cli("-C", tmp_path, "status", "--format", "json").stdout)
    skipped = {c["name"]: c["audience_skipped"] for c in status["campaigns"]}
    assert skipped["all"] == {"count": 0, "reason": None}
    assert skipped["budget"]["count"] == 2
    assert "has no attribute 'budget'" in skipped["budget"]["reason"]
    table = cli("-C", tmp_path, "status")
    assert table.exit_code == 0
    assert "budget: 2 lead(s) skipped: campaigns.budget.audience" in table.stdout


def test_quiet_send_warns_about_skipped_leads_only_when_that_changes(
    tmp_path: Path, cli: Cli
) -> None:
    """Review of issue 9 #9: cron must not mail the same standing warning every run."""
    store = _setup(tmp_path, leads=2, body=TWO_AUDIENCES)  # no budget: cannot be evaluated
    warning = "campaignctl: warning: budget: 2 lead(s) skipped: "
    res = cli("-C", tmp_path, "send", "--quiet")
    assert res.exit_code == 0
    assert res.stderr.startswith(warning)  # new: said once
    res = cli("-C", tmp_path, "send", "--quiet")
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", "")  # unchanged: silent
    assert warning in cli("-C", tmp_path, "send").stderr  # without --quiet: always said
    add_leads(store, 1, start=20)  # a third lead without a budget: the count changes
    res = cli("-C", tmp_path, "send", "--quiet")
    assert res.stderr.startswith("campaignctl: warning: budget: 3 lead(s) skipped: ")
    assert "budget: 3 lead(s) skipped" in cli("-C", tmp_path, "status").stdout

"""`send --dry-run` prints a summary and at most a screenful of the messages that would go,
unless `--show N` or `--show all` (issue 15 #5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

from campaignctl.cli.send import DRY_SHOWN
from campaignctl.store import Store
from tests.support import add_leads, messages, project

Cli = Callable[..., Result]

UNLIMITED = """
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


def _setup(tmp_path: Path, leads: int) -> Store:
    store = Store.for_config(project(tmp_path, UNLIMITED))
    add_leads(store, leads)
    return store


def _listed(out: str) -> int:
    """Rows of the dry run's table: one per message, each naming its recipient."""
    return sum(1 for line in out.splitlines() if "+1212555" in line)


def test_a_dry_run_lists_a_screenful_and_says_how_many_more(tmp_path: Path, cli: Cli) -> None:
    store = _setup(tmp_path, DRY_SHOWN + 7)
    res = cli("-C", tmp_path, "send", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert _listed(res.stdout) == DRY_SHOWN
    assert "and 7 more: --show all lists them" in res.stdout
    assert f"dry run: would send {DRY_SHOWN + 7}," in res.stdout
    assert messages(store) == []


def test_show_all_lists_every_message(tmp_path: Path, cli: Cli) -> None:
    _setup(tmp_path, DRY_SHOWN + 7)
    res = cli("-C", tmp_path, "send", "--dry-run", "--show", "all")
    assert res.exit_code == 0, res.stderr
    assert _listed(res.stdout) == DRY_SHOWN + 7
    assert "more: --show all" not in res.stdout


def test_show_n_lists_n_and_zero_only_the_summary(tmp_path: Path, cli: Cli) -> None:
    _setup(tmp_path, 5)
    res = cli("-C", tmp_path, "send", "--dry-run", "--show", "2")
    assert _listed(res.stdout) == 2
    assert "and 3 more" in res.stdout
    res = cli("-C", tmp_path, "send", "--dry-run", "--show", "0")
    assert _listed(res.stdout) == 0
    assert res.stdout.strip().splitlines() == [
        "dry run: would send 5, fail 0, skip 0; deferred 0 by limit, 0 by window"
    ]


def test_a_few_messages_are_all_listed_without_a_note(tmp_path: Path, cli: Cli) -> None:
    _setup(tmp_path, 3)
    res = cli("-C", tmp_path, "send", "--dry-run")
    assert _listed(res.stdout) == 3
    assert "more" not in res.stdout


def test_show_is_a_usage_error_without_dry_run_or_with_a_bad_value(tmp_path: Path, cli: Cli):
    _setup(tmp_path, 1)
    res = cli("-C", tmp_path, "send", "--show", "all")
    assert res.exit_code == 2
    assert "--show lists the messages of a dry run: add --dry-run" in res.stderr
    res = cli("-C", tmp_path, "send", "--dry-run", "--show", "many")
    assert res.exit_code == 2
    assert "--show 'many': give a number of messages, or all" in res.stderr

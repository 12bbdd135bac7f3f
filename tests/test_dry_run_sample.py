"""`send --dry-run` prints a summary and at most a screenful of the messages that would go,
unless `--show N` or `--show all` (issue 15 #5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

import campaignctl.cli.streamed as streamed
from campaignctl.cli.send import DRY_SHOWN
from campaignctl.config import load
from campaignctl.runner import dry_run, scratch_dir
from campaignctl.store import Store
from tests.support import T0, add_leads, messages, project

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


def test_a_dry_run_holds_only_the_messages_it_keeps(tmp_path: Path) -> None:
    """Every message that would go is counted and handed on as the pass reaches it; the result
    keeps the first `keep` (a dry run of a million messages holds none of them)."""
    store = _setup(tmp_path, 30)
    cfg = load(tmp_path / "campaigns.toml")
    heard: list[str] = []
    dry = dry_run(cfg, store, T0, keep=3, on_message=lambda m: heard.append(m.to))
    assert dry.count == 30
    assert len(heard) == 30 == len(set(heard))
    assert [m.to for m in dry.messages] == heard[:3]
    assert dry_run(cfg, store, T0).count == 30  # nothing was written by the first


def test_the_copy_goes_to_tmpdir_else_var_tmp_and_is_removed(tmp_path: Path) -> None:
    """The dry run's copy of the database is made on disk: in `$TMPDIR` when set, else in
    /var/tmp (where /tmp may be a tmpfs, in memory); it is gone once the dry run ends."""
    (tmp_path / "project").mkdir()
    store = _setup(tmp_path / "project", 3)
    cfg = load(tmp_path / "project" / "campaigns.toml")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    seen: list[Path] = []  # the copies there while the pass runs

    def look(_msg: object) -> None:
        seen.extend(scratch.glob("campaignctl-dry-*/dry.db"))

    dry = dry_run(cfg, store, T0, environ={"TMPDIR": str(scratch)}, on_message=look)
    assert dry.count == 3
    assert len(set(seen)) == 1
    assert list(scratch.iterdir()) == []
    assert scratch_dir({}) == "/var/tmp"  # Debian's, always there and writable
    assert scratch_dir({"TMPDIR": str(scratch)}) == str(scratch)


def test_a_long_listing_streams_as_one_table(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the first rows (`streamed.BATCH`), the table is written as the pass reaches each
    message, in the widths the first rows needed: still one table, every message in it."""
    _setup(tmp_path, 27)
    whole = cli("-C", tmp_path, "send", "--dry-run", "--show", "all").stdout
    monkeypatch.setattr(streamed, "BATCH", 4)
    frames: list[int] = []
    stream = streamed.StreamedTable._stream

    def spied(table: streamed.StreamedTable) -> None:
        frames.append(table.count)
        stream(table)

    monkeypatch.setattr(streamed.StreamedTable, "_stream", spied)
    res = cli("-C", tmp_path, "send", "--dry-run", "--show", "all")
    assert res.exit_code == 0, res.stderr
    assert frames == [5]  # the frame was drawn once, at the fifth message
    lines = res.stdout.splitlines()
    assert lines[-1] == "dry run: would send 27, fail 0, skip 0; deferred 0 by limit, 0 by window"
    table = lines[1:-1]  # under the title
    assert "would send now (dry run: nothing written)" in lines[0]
    assert [line[0] for line in table].count("┏") == 1
    assert sum("┃ campaign" in line for line in table) == 1
    assert table[-1].startswith("└")
    assert {len(line) for line in table} == {len(table[0])}
    assert _listed(res.stdout) == 27
    recipients = [line.split("│")[4].strip() for line in table if "+1212555" in line]
    assert recipients == [
        line.split("│")[4].strip() for line in whole.splitlines() if "+1212555" in line
    ]


def test_a_dry_run_names_each_message_that_would_fail(tmp_path: Path, cli: Cli) -> None:
    store = Store.for_config(project(tmp_path, UNLIMITED.replace("first_name", "nickname")))
    add_leads(store, 2)
    add_leads(store, 1, start=5, attrs={"nickname": "Bee"})
    res = cli("-C", tmp_path, "send", "--dry-run")
    assert res.exit_code == 1
    assert "dry run: would send 1, fail 2," in res.stdout
    errors = [line for line in res.stderr.splitlines() if line.startswith("campaignctl: error:")]
    assert len(errors) == 2
    assert all("welcome/hello via sms to +1212555000" in e and "nickname" in e for e in errors)
    assert messages(store) == []

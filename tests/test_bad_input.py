"""Bad input from the command line: one line naming the key path or file, the right exit code,
never "internal error", a traceback, SQL or SQLAlchemy's "Background on this error" line."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from typer.testing import Result

from campaignctl.config import load
from campaignctl.store import Store
from tests.support import MINIMAL_TOML, add_leads

Cli = Callable[..., Result]


def assert_one_clear_line(err: str, *names: str) -> None:
    """stderr is `campaignctl: error: ...` (+ an optional hint line) naming each of `names`."""
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("campaignctl: error: "), err
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), err
    for name in names:
        assert name in lines[0], (name, err)
    for banned in ("internal error", "Traceback", "Background on this error", "SELECT", "INSERT"):
        assert banned not in err, (banned, err)


def _toml(project: Path, old: str, new: str) -> None:
    path = project / "campaigns.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# ---------------------------------------------------------------- values out of any range


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('delay = "2d"', 'delay = "99999999999999999w"', "campaigns.welcome.steps[1].delay"),
        ('delay = "2d"', f'delay = "{"9" * 5000}s"', "campaigns.welcome.steps[1].delay"),
        ("daily_limit = 50", "per_second = 1e-300", "channels.sms.per_second"),
        ("daily_limit = 50", "per_second = 0", "channels.sms.per_second"),
        ("daily_limit = 50", "per_second = inf", "channels.sms.per_second"),
        ("daily_limit = 50", "per_second = nan", "channels.sms.per_second"),
        ('days = "mon-fri-sun"', None, "channels.sms.days"),
        ('days = "fri-mon-xyz"', None, "channels.sms.days"),
        ('days = "monkey"', None, "channels.sms.days"),
    ],
)
@pytest.mark.parametrize("command", [("check",), ("plan",), ("send", "--dry-run")])
def test_values_out_of_range_are_config_errors(
    project: Path, cli: Cli, old: str, new: str | None, key: str, command: tuple[str, ...]
) -> None:
    if new is None:  # a days value: added to the sms channel
        old, new = "daily_limit = 50", f"daily_limit = 50\n{old}"
    _toml(project, old, new)
    res = cli("-C", project, *command)
    if command == ("check",):
        assert res.exit_code == 1
        assert key in res.stdout
        assert "internal error" not in res.stdout + res.stderr
    else:
        assert res.exit_code == 2
        assert_one_clear_line(res.stderr, "campaigns.toml", key)


def test_bad_days_name_the_accepted_forms(project: Path, cli: Cli) -> None:
    _toml(project, "daily_limit = 50", 'daily_limit = 50\ndays = "mon-fri-sun"')
    res = cli("-C", project, "check")
    assert res.exit_code == 1
    assert "'mon-fri', 'sat,sun', 'mon-sun' or '*'" in res.stdout


# ---------------------------------------------------------------- audience expressions


@pytest.mark.parametrize(
    "expr",
    [
        "(" * 5000 + "1" + ")" * 5000,  # RecursionError in Jinja's parser
        "(" * 500 + "1" + ")" * 500,  # within the length cap, still too deep
        " or ".join(["status == 'x'"] * 7000),  # 100 kB
    ],
)
@pytest.mark.parametrize("command", [("check",), ("plan",), ("leads", "list")])
def test_huge_or_deep_audience_names_its_key(
    project: Path, cli: Cli, expr: str, command: tuple[str, ...]
) -> None:
    _toml(project, "audience = \"status == 'new'\"", f'audience = "{expr}"')
    if command == ("leads", "list"):
        command = ("leads", "list", "--where", expr)
    res = cli("-C", project, *command)
    key = "--where" if "--where" in command else "campaigns.welcome.audience"
    if command == ("check",):
        assert res.exit_code == 1
        assert key in res.stdout
        assert "too " in res.stdout
        assert "internal error" not in res.stdout + res.stderr
    else:
        assert res.exit_code == 2
        assert_one_clear_line(res.stderr, key)
        assert len(res.stderr) < 500  # the expression itself is cut


# ---------------------------------------------------------------- the database setting


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("mysql://u:p@localhost/db", "mysql"),
        ("nosuchdriver://x", "nosuchdriver"),
    ],
)
def test_a_database_that_is_not_sqlite_or_postgresql_is_a_config_error(
    project: Path, cli: Cli, url: str, scheme: str
) -> None:
    _toml(project, "[settings]", f'[settings]\ndatabase = "{url}"')
    res = cli("-C", project, "leads", "list")
    assert res.exit_code == 2
    assert_one_clear_line(res.stderr, "settings.database", f"{scheme!r} databases are not")
    res = cli("-C", project, "check")
    assert res.exit_code == 1
    assert "settings.database" in res.stdout


# ---------------------------------------------------------------- --config DIR


@pytest.mark.parametrize(
    "command",
    [
        ("campaign", "set", "welcome", "status=paused"),
        ("campaign", "add", "other"),
        ("channel", "set", "sms", "daily_limit=3"),
        ("status",),
        ("plan",),
        ("leads", "list"),
    ],
)
def test_config_naming_a_directory(project: Path, cli: Cli, command: tuple[str, ...]) -> None:
    (project / "templates").mkdir()
    res = cli("-C", project, "--config", "templates", *command)
    assert res.exit_code == 2
    assert_one_clear_line(res.stderr, "templates: is a directory")
    assert not (project / ".templates.lock").exists()


# ---------------------------------------------------------------- a read-only or full database


@pytest.fixture
def sqlite_pragma() -> Iterator[Callable[[str], None]]:
    """Run a PRAGMA on every new SQLAlchemy connection: SQLite's own read-only and disk-full
    errors, without root's power to write anything or a disk to fill."""
    pragmas: list[str] = []

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        for pragma in pragmas:
            dbapi_conn.execute(pragma)

    event.listen(Engine, "connect", on_connect)
    try:
        yield pragmas.append
    finally:
        event.remove(Engine, "connect", on_connect)


SENDING = MINIMAL_TOML.replace("[settings]", '[settings]\ndatabase = "leads.db"')


@pytest.mark.parametrize(
    ("pragma", "reason"),
    [
        ("PRAGMA query_only = ON", "attempt to write a readonly database"),
        ("PRAGMA max_page_count = 1", "database or disk is full"),
    ],
)
def test_read_only_or_full_database_on_send(
    tmp_path: Path, cli: Cli, sqlite_pragma: Callable[[str], None], pragma: str, reason: str
) -> None:
    (tmp_path / "campaigns.toml").write_text(SENDING)
    store = Store.for_config(load(tmp_path / "campaigns.toml"))
    add_leads(store, 300)
    store.close()
    if "max_page_count" in pragma:
        import sqlite3

        with sqlite3.connect(tmp_path / "leads.db") as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
        pragma = f"PRAGMA max_page_count = {pages}"
    sqlite_pragma(pragma)
    res = cli("-C", tmp_path, "send")
    assert res.exit_code == 2
    assert_one_clear_line(res.stderr, "leads.db: cannot use the database", reason)
    assert res.stderr.splitlines()[1].startswith("hint: ")


def _limit_file_size() -> None:
    # A file-size limit makes SQLite's writes fail as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


@pytest.mark.parametrize("workers", ["0", "1"])
def test_full_disk_during_import(tmp_path: Path, workers: str) -> None:
    (tmp_path / "campaigns.toml").write_text(MINIMAL_TOML)
    rows = "".join(f"user{i}@example.com,User{i}\n" for i in range(3000))
    (tmp_path / "big.csv").write_text("Email,First Name\n" + rows)
    res = subprocess.run(
        [sys.executable, "-m", "campaignctl", "leads", "import", "big.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        # no .pyc written under the limit: a truncated one would break later imports
        env={"CAMPAIGNCTL_IMPORT_WORKERS": workers, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
        check=False,
    )
    assert res.returncode == 2, res.stderr
    assert_one_clear_line(res.stderr, "campaignctl.db: cannot use the database")

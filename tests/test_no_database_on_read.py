"""Only commands that write create the database: reading a fresh project leaves no file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

READ_ONLY = [
    ["status"],
    ["status", "--format", "json"],
    ["plan"],
    ["leads", "list"],
    ["leads", "list", "--format", "json"],
    ["send", "--dry-run"],
    ["preview", "welcome"],
    ["check"],
]


def _database_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("campaignctl.db"))


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_commands_create_no_database(cli, project, args):
    r = cli("-C", project, *args)
    assert r.exit_code == 0, r.stderr
    assert _database_files(project) == []


def test_a_missing_database_reads_as_an_empty_one(cli, project):
    doc = json.loads(cli("-C", project, "status", "--format", "json").stdout)
    assert [c["enrolled"] for c in doc["campaigns"]] == [0]
    assert json.loads(cli("-C", project, "leads", "list", "--format", "json").stdout) == []
    r = cli("-C", project, "send", "--dry-run")
    assert "dry run: would send 0" in r.stdout
    assert _database_files(project) == []


def test_a_failed_import_creates_no_database_and_a_good_one_does(cli, project):
    (project / "empty.csv").write_text("")
    r = cli("-C", project, "leads", "import", "empty.csv")
    assert r.exit_code == 2
    assert _database_files(project) == []
    (project / "leads.csv").write_text("email,first_name\nana@example.com,Ana\n")
    assert cli("-C", project, "leads", "import", "leads.csv", "--dry-run").exit_code == 0
    assert _database_files(project) == []
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    assert "campaignctl.db" in _database_files(project)
    doc = json.loads(cli("-C", project, "leads", "list", "--format", "json").stdout)
    assert [lead["email"] for lead in doc] == ["ana@example.com"]


@pytest.mark.parametrize(
    "args",
    [
        ["leads", "optout", "nobody@example.com"],
        ["leads", "optout", "nobody@example.com", "--channel", "nope"],
        ["leads", "optout", "not an address"],
        ["send", "--channel", "nope"],
        ["send", "--campaign", "nope"],
        ["sync", "--channel", "nope"],
    ],
    ids=" ".join,
)
def test_a_failing_writing_command_creates_no_database(cli, project, args):
    r = cli("-C", project, *args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("campaignctl: error: ")
    assert _database_files(project) == []


def test_optout_of_a_known_lead_still_writes(cli, project):
    (project / "leads.csv").write_text("email,first_name\nana@example.com,Ana\n")
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    r = cli("-C", project, "leads", "optout", "ana@example.com")
    assert r.exit_code == 0, r.output
    assert "ana@example.com opted out of every channel" in r.stdout


def _pg_tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return sorted(name for (name,) in rows)


@pytest.mark.parametrize("args", [*READ_ONLY, ["report"], ["messages", "list"]], ids=" ".join)
def test_read_only_commands_create_no_tables_on_postgresql(cli, project, pg_url, monkeypatch, args):
    """On an empty PostgreSQL database a reading command reads an empty one, as on SQLite
    without its file: it creates no table (`campaignctl send` or `leads import` do)."""
    monkeypatch.setenv("CAMPAIGNCTL_DATABASE", pg_url)
    r = cli("-C", project, *args)
    assert r.exit_code == 0, r.stderr
    assert _pg_tables(pg_url) == []
    (project / "leads.csv").write_text("email,first_name\nana@example.com,Ana\n")
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    assert "schema_migration" in _pg_tables(pg_url)

"""`campaignctl leads import` and `leads list` through the command line."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import PUBLIC_DATA, REPO
from tests.support.rows import sql_rows

# every test on SQLite and on PostgreSQL (tests/support/databases.py)
pytestmark = pytest.mark.usefixtures("db_url")

SAMPLE = (
    "E-mail,First Name,Last Name,Mobile,Country,Tags,Budget Max\n"
    "ana@x.com,Ana,Cruz,0917 123 4567,Philippines,buyer;vip,5000000\n"
    "ben@x.com,Ben,Reyes,(415) 555-0132 x12,United States,seller,\n"
    "ANA@x.com,Ana,Dup,,,,\n"
    "nobody,No,Body,12,,,\n"
)


@pytest.fixture
def leads_csv(project: Path) -> Path:
    path = project / "leads.csv"
    path.write_text(SAMPLE)
    return path


def lead_count(project: Path) -> int:
    return int(sql_rows(project / "campaignctl.db", "SELECT count(*) FROM lead")[0][0])


def test_import_summary_and_notes(cli, project, leads_csv):
    r = cli("-C", project, "leads", "import", "leads.csv", "--tag", "imported")
    assert r.exit_code == 0, r.output
    summary = next(line for line in r.stdout.splitlines() if "│" in line and "4" in line)
    assert [c.strip() for c in summary.strip("│ ").split("│")] == ["4", "2", "1", "1", "1"]
    assert "line 3: phone '(415) 555-0132 x12': extension x12 dropped" in r.stdout
    assert "line 5: rejected: email 'nobody' is not valid" in r.stdout
    assert "email <- 'E-mail'" in r.stdout
    assert "phone <- 'Mobile'" in r.stdout
    assert lead_count(project) == 2

    again = cli("-C", project, "leads", "import", "leads.csv")
    assert again.exit_code == 0
    assert lead_count(project) == 2


def test_import_dry_run_and_rejects(cli, project, leads_csv):
    r = cli("-C", project, "leads", "import", "leads.csv", "--dry-run", "--rejects", "rej.csv")
    assert r.exit_code == 0, r.output
    assert "dry run: nothing written" in r.stdout
    assert not (project / "campaignctl.db").exists()
    with open(project / "rej.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(row["line"], row["E-mail"]) for row in rows] == [("3", "ben@x.com"), ("5", "nobody")]


def test_import_caps_printed_notes(cli, project):
    lines = ["email,phone"] + [f"u{i}@x.com,12" for i in range(30)]
    (project / "many.csv").write_text("\n".join(lines) + "\n")
    r = cli("-C", project, "leads", "import", "many.csv")
    assert r.exit_code == 0
    assert sum(line.startswith("line ") for line in r.stdout.splitlines()) == 20
    assert "... and 10 more notes (--rejects FILE writes them all)" in r.stdout


def test_import_public_data_and_map(cli, project):
    src = PUBLIC_DATA / "customers-100.csv"
    (project / "c.csv").write_text(src.read_text().replace("Email", "Contact", 1))
    r = cli("-C", project, "leads", "import", "c.csv", "--dry-run")
    assert r.exit_code == 0
    assert "email <-" not in r.stdout  # only the phone column maps by itself
    r = cli("-C", project, "leads", "import", "c.csv", "--map", "email=Contact")
    assert r.exit_code == 0, r.output
    assert lead_count(project) == 100


def test_latin1_warning_on_stderr(cli, project):
    (project / "l.csv").write_bytes("email,first_name\njose@x.com,José\n".encode("latin-1"))
    r = cli("-C", project, "leads", "import", "l.csv")
    assert r.exit_code == 0
    assert r.stderr.startswith("campaignctl: warning: l.csv: not UTF-8; read as cp1252")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "campaignctl: error: data: is a directory, not a CSV file"),
        (b"", "campaignctl: error: data: the file is empty"),
        (b"\x00\x01binary\x00", "campaignctl: error: data: a binary file, not a CSV text file"),
        (b"email\n" + bytes(range(128, 256)) * 4 + b"\n", "campaignctl: error: data: unknown text"),
        (b"name,city\nAna,Makati\n", "campaignctl: error: data: no email or phone column"),
        ("missing", "campaignctl: error: missing: no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, project, content, message):
    target = "data"
    if content is None:
        (project / "data").mkdir()
    elif content == "missing":
        target = "missing"
    else:
        (project / "data").write_bytes(content)
    r = cli("-C", project, "leads", "import", target)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(message)
    assert len(lines) <= 2
    assert all(x.startswith("hint: ") for x in lines[1:])
    assert "Traceback" not in r.output
    assert not (project / "campaignctl.db").exists()


def test_no_contact_column_suggests_map(cli, project):
    (project / "l.csv").write_text("Correo,Nombre\nana@x.com,Ana\n")
    r = cli("-C", project, "leads", "import", "l.csv")
    assert r.exit_code == 2
    assert "its columns: 'Correo', 'Nombre'" in r.stderr
    assert "hint: campaignctl leads import l.csv --map email=COLUMN" in r.stderr


@pytest.mark.sqlite_only  # the file is made by the first import
def test_bad_input_leaves_the_database_untouched(cli, project, leads_csv):
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    db = project / "campaignctl.db"
    (project / "bad.csv").write_text("name\nx\n")
    before = lead_count(project)
    r = cli("-C", project, "leads", "import", "bad.csv")
    assert r.exit_code == 2
    assert lead_count(project) == before
    assert db.exists()


def test_list_formats_and_where(cli, project, leads_csv):
    assert cli("-C", project, "leads", "import", "leads.csv").exit_code == 0
    r = cli("-C", project, "leads", "list", "--format", "json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert [lead["email"] for lead in data] == ["ana@x.com", "ben@x.com"]
    ana = data[0]
    for key in ("email", "phone", "first_name", "last_name", "timezone", "status", "tags"):
        assert key in ana
    assert ana["phone"] == "+639171234567"
    assert ana["tags"] == ["buyer", "vip"]
    assert ana["optouts"] == []
    assert ana["budget_max"] == 5000000  # a number (issue 11: numeric attributes)
    assert ana["country"] == "Philippines"
    assert ana["status"] == "new"

    r = cli("-C", project, "leads", "list", "--format", "json", "--where", "'seller' in tags")
    assert [lead["email"] for lead in json.loads(r.stdout)] == ["ben@x.com"]

    r = cli("-C", project, "leads", "list", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["email"] for row in rows] == ["ana@x.com", "ben@x.com"]
    assert rows[0]["tags"] == "buyer;vip"
    assert rows[0]["budget_max"] == "5000000"
    assert rows[1]["budget_max"] == ""

    r = cli("-C", project, "leads", "list", "--limit", "1")
    assert r.exit_code == 0
    assert "ana@x.com" in r.stdout
    assert "ben@x.com" not in r.stdout
    assert "1 lead(s)" in r.stdout


def test_list_bad_where_is_one_line(cli, project, leads_csv):
    r = cli("-C", project, "leads", "list", "--where", "status ==")
    assert r.exit_code == 2
    assert r.stderr.startswith("campaignctl: error: --where: invalid expression")
    assert "Traceback" not in r.output


def test_leads_commands_have_help_and_readme_sections(cli):
    readme = (REPO / "README.md").read_text()
    for command in ("import", "list"):
        r = cli("leads", command, "--help")
        assert r.exit_code == 0
        assert "Usage:" in r.stdout
        assert "--" in r.stdout
        assert f"### `campaignctl leads {command}" in readme


def test_import_as_a_subprocess_uses_workers(tmp_path, project):
    """The real entry point, with worker processes (forced on a small file)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CAMPAIGNCTL_IMPORT_WORKERS": "2"}
    data = PUBLIC_DATA / "customers-10000.csv"
    r = subprocess.run(
        [sys.executable, "-m", "campaignctl", "-C", str(project), "leads", "import", str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert lead_count(project) > 9000


# ---------------------------------------------------------------- encodings


def _customer_with(name: str, encoding: str, project: Path) -> Path:
    """customers-100.csv's header and first row, with `name` as the first name."""
    header, row = (PUBLIC_DATA / "customers-100.csv").read_text().splitlines()[:2]
    cells = row.split(",")
    cells[2] = name
    path = project / "l.csv"
    path.write_bytes(f"{header}\n{','.join(cells)}\n".encode(encoding))
    return path


def _first_names(cli, project: Path) -> list[str]:
    r = cli("-C", project, "leads", "list", "--format", "json")
    return [lead["first_name"] for lead in json.loads(r.stdout)]


@pytest.mark.parametrize("name", ["François Müller", "Renée Lefèvre", "José Muñoz"])
def test_latin1_names_are_read_as_cp1252_and_shown(cli, project, name):
    # charset-normalizer ranks cp850 or cp775 first for the first two of these
    _customer_with(name, "latin-1", project)
    r = cli("-C", project, "leads", "import", "l.csv")
    assert r.exit_code == 0, r.output
    assert _first_names(cli, project) == [name]
    warning = r.stderr.strip()
    assert warning.startswith("campaignctl: warning: l.csv: not UTF-8; read as cp1252 (guessed)")
    assert f"line 2: {name!r}" in warning
    assert "rerun with --encoding" in warning


@pytest.mark.parametrize("workers", ["0", "1"])
def test_encoding_option_is_used_without_a_guess(cli, project, monkeypatch, workers):
    # with workers, the import runs in a process of its own: the encoding must reach it
    monkeypatch.setenv("CAMPAIGNCTL_IMPORT_WORKERS", workers)
    _customer_with("Łukasz Wałęsa", "cp1250", project)
    r = cli("-C", project, "leads", "import", "l.csv", "--encoding", "cp1250")
    assert r.exit_code == 0, r.output
    assert "warning" not in r.stderr
    assert _first_names(cli, project) == ["Łukasz Wałęsa"]


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("no-such-codec", "campaignctl: error: --encoding 'no-such-codec': unknown encoding"),
        ("rot13", "campaignctl: error: --encoding 'rot13': not a text encoding"),
        (
            "undefined",
            "campaignctl: error: --encoding 'undefined': cannot decode with it "
            "(undefined encoding)",
        ),
        ("utf-8", "campaignctl: error: l.csv: not utf-8 text (--encoding utf-8)"),
    ],
)
def test_bad_encoding_option(cli, project, encoding, message):
    _customer_with("José", "latin-1", project)
    r = cli("-C", project, "leads", "import", "l.csv", "--dry-run", "--encoding", encoding)
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0] == message
    assert "internal error" not in r.stderr

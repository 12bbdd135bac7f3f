"""Small commands import only what they use (issue 15 #4): a command that only reads needs
neither the engine (its claim, send and recovery stages, the runner, APScheduler) nor the ORM
(SQLModel, SQLAlchemy's ORM). Each command runs in a subprocess that then lists the heavy
modules it loaded, so a stray top-level import fails here rather than slowing every `status`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO

#: What no read-only command may load.
HEAVY = (
    "sqlmodel",
    "sqlalchemy.orm",
    "campaignctl.engine.core",
    "campaignctl.engine.claim",
    "campaignctl.engine.outcomes",
    "campaignctl.engine.recovery",
    "campaignctl.runner",
    "apscheduler",
)

#: Runs `campaignctl ARGS...` as `python -m campaignctl` does, then prints the heavy modules.
PROBE = f"""
import runpy, sys
sys.argv = ["campaignctl", *sys.argv[1:]]
try:
    runpy.run_module("campaignctl", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("EXIT", code, file=sys.stderr)
print("HEAVY", sorted(m for m in sys.modules if m in {HEAVY!r}), file=sys.stderr)
print("SQLALCHEMY", "sqlalchemy" in sys.modules, file=sys.stderr)
"""


def run(folder: Path, *args: str) -> tuple[int, list[str], str]:
    code, heavy, stdout, _ = probe(folder, *args)
    return code, heavy, stdout


def probe(folder: Path, *args: str) -> tuple[int, list[str], str, bool]:
    """(exit code, heavy modules loaded, stdout, whether SQLAlchemy was loaded)."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "-C", str(folder), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    lines = out.stderr.splitlines()
    code = int(next(x for x in lines if x.startswith("EXIT ")).split()[1])
    heavy = eval(next(x for x in lines if x.startswith("HEAVY ")).split(" ", 1)[1])
    alchemy = next(x for x in lines if x.startswith("SQLALCHEMY ")).split()[1] == "True"
    return code, heavy, out.stdout, alchemy


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example with its leads imported and a first `send` done."""
    import shutil

    folder = tmp_path_factory.mktemp("example")
    shutil.copy(REPO / "campaigns.toml", folder / "campaigns.toml")
    shutil.copytree(REPO / "examples", folder / "examples")
    for args in (("leads", "import", "examples/sunrise/leads.csv"), ("send",)):
        subprocess.run(
            [sys.executable, "-m", "campaignctl", "-C", str(folder), *args],
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=True,
            timeout=300,
        )
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("status",),
        ("status", "--format", "json"),
        ("check",),
        ("plan",),
        ("messages", "list"),
        ("messages", "list", "--format", "json"),
        ("leads", "list"),
        ("leads", "list", "--format", "csv"),
        ("leads", "list", "--format", "json"),
        ("explain", "maria.santos@example.com"),
        ("explain", "maria.santos@example.com", "--format", "json"),
    ],
    ids=" ".join,
)
def test_a_small_command_loads_neither_the_engine_nor_the_orm(sent: Path, args: tuple[str, ...]):
    code, heavy, _ = run(sent, *args)
    assert code == 0
    assert heavy == []


def test_the_probe_sees_what_send_loads(sent: Path):
    """The probe itself works: `send` does load the engine."""
    code, heavy, _ = run(sent, "send")
    assert code == 0
    assert "campaignctl.engine.core" in heavy


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("status",), "welcome"),
        (("status", "--format", "json"), "welcome"),
        (("plan",), "welcome"),
        (("check",), "sample lead(s) (first 200 from campaignctl.db)"),
        (("leads", "list"), "maria.santos@example.com"),
        (("leads", "list", "--format", "csv", "--where", "'buyer' in tags"), "email,phone"),
        (("messages", "list"), "welcome"),
        (("messages", "list", "--format", "json", "--status", "sent"), '"status": "sent"'),
        (("messages", "list", "--lead", "Maria.Santos@example.com", "--format", "csv"), ",maria."),
        (("messages", "list", "--campaign", "welcome", "--format", "csv"), "welcome,hello"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, tuple) else "",
)
def test_the_reading_commands_read_without_sqlalchemy(sent: Path, args: tuple[str, ...], says: str):
    """On an up-to-date SQLite file, `status`, `plan`, `check` (its sample leads), `leads list`
    and `messages list` read through the sqlite3 module alone (`Store.reads()`): SQLAlchemy
    is a quarter of their start-up."""
    code, _, stdout, alchemy = probe(sent, *args)
    assert code == 0
    assert says in stdout
    assert not alchemy


def test_a_database_to_migrate_is_read_through_the_engine(sent: Path, tmp_path: Path):
    """A database missing a migration is migrated first (through SQLAlchemy), then read."""
    import shutil
    import sqlite3

    folder = tmp_path / "old"
    shutil.copytree(sent, folder)
    with sqlite3.connect(folder / "campaignctl.db") as db:
        db.execute("DROP INDEX ix_enrolment_campaign_state")
        db.execute("DELETE FROM schema_migration WHERE name = 'm035_enrolment_state_index'")
    code, _, stdout, alchemy = probe(folder, "status")
    assert code == 0
    assert "welcome" in stdout
    assert alchemy
    with sqlite3.connect(folder / "campaignctl.db") as db:
        names = {n for (n,) in db.execute("SELECT name FROM schema_migration")}
    assert "m035_enrolment_state_index" in names
    code, _, _, alchemy = probe(folder, "status")
    assert (code, alchemy) == (0, False)

"""docs/operations.md and examples/systemd/: the crontab lines and units must keep working.

Command lines are checked against the real CLI: every command they use (`send`, `sync`,
`daemon`) exists, so an unknown option fails. A command that does not exist yet would be
checked against the synopsis in DESIGN.md or the README instead.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import typer.main

from campaignctl.cli import app
from campaignctl.errors import ExitCode
from campaignctl.timespec import parse_duration
from tests.conftest import REPO

DOC = REPO / "docs" / "operations.md"
UNITS = REPO / "examples" / "systemd"
# The product contract lives beside the repository in the workspace (not in a CI checkout).
DESIGN = next(
    (d / "shared" / "DESIGN.md" for d in REPO.parents if (d / "shared" / "DESIGN.md").is_file()),
    REPO / "DESIGN.md",
)
GLOBAL_WITH_VALUE = {"-C", "--config"}


def _synopsis(command: str) -> str | None:
    """The documented options of a command not built yet: `campaignctl send [--quiet] ...`."""
    for doc in (REPO / "README.md", DESIGN):
        if doc.is_file():
            m = re.search(
                rf"(?m)^(?:### `)?campaignctl {re.escape(command)}\b(.*)$", doc.read_text()
            )
            if m:
                return m.group(1)
    return None


def check_invocation(argv: list[str]) -> str:
    """Fail unless `campaignctl ARGV` names real (or documented) commands and options.

    Returns where the command was found: "cli" or "docs".
    """
    assert Path(argv[0]).name == "campaignctl", argv
    args = argv[1:]
    group = typer.main.get_command(app)
    root_opts = {o for p in group.params for o in p.opts}
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        assert opt in root_opts, f"unknown global option {opt}"
        if opt in GLOBAL_WITH_VALUE:
            args.pop(0)
    assert args, "no command"
    cmd = group
    path: list[str] = []
    while isinstance(cmd, typer.core.TyperGroup) and args and args[0] in cmd.commands:
        path.append(args.pop(0))
        cmd = cmd.commands[path[-1]]
    options = [a.split("=", 1)[0] for a in args if a.startswith("-")]
    if path and not isinstance(cmd, typer.core.TyperGroup):
        known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        for opt in options:
            assert opt in known, f"campaignctl {' '.join(path)}: no option {opt}"
        return "cli"
    name = " ".join([*path, args[0]] if args else path)
    synopsis = _synopsis(name)
    if synopsis is None:
        pytest.skip(f"`campaignctl {name}` is not built yet and no DESIGN.md is here to check")
    for opt in options:
        assert opt in synopsis, f"campaignctl {name}: {opt} is not documented"
    return "docs"


def _command(words: list[str]) -> list[str]:
    """The campaignctl invocation, without shell redirections and what follows them."""
    out = []
    for w in words:
        if w[:1] in "><|&" or w in ("||", "&&", ";"):
            break
        out.append(w)
    return out


def _crontab_lines() -> list[str]:
    blocks = re.findall(r"```crontab\n(.*?)```", DOC.read_text(), re.S)
    assert blocks, "docs/operations.md has no ```crontab block"
    return [ln for b in blocks for ln in b.splitlines() if ln.strip() and not ln.startswith("#")]


def test_crontab_has_send_and_sync():
    commands = [" ".join(ln.split()[5:]) for ln in _crontab_lines()]
    assert "campaignctl -C /srv/outreach send --quiet" in commands
    assert any(c.startswith("campaignctl -C /srv/outreach sync") for c in commands)
    assert "*/10 * * * * campaignctl -C /srv/outreach send --quiet" in [
        " ".join(ln.split()) for ln in _crontab_lines()
    ]


@pytest.mark.parametrize("line", _crontab_lines())
def test_crontab_lines_are_valid(line):
    fields = line.split()
    for f in fields[:5]:
        assert re.fullmatch(r"[\d*/,-]+", f), f"bad cron field {f!r} in {line!r}"
    assert check_invocation(_command(shlex.split(" ".join(fields[5:])))) == "cli"


def test_every_exit_code_is_explained():
    text = DOC.read_text()
    for code in ExitCode:
        assert re.search(rf"(?m)^\| {int(code)} \| .+ \| .+ \|$", text), code


def _unit(name: str) -> configparser.ConfigParser:
    # systemd allows repeated keys and empty values; strict=False keeps the last, like systemd.
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string((UNITS / name).read_text())
    return cp


def _exec(unit: configparser.ConfigParser) -> list[str]:
    return shlex.split(unit["Service"]["ExecStart"])


def test_daemon_unit():
    u = _unit("campaignctl.service")
    s = u["Service"]
    assert s["Type"] == "simple"
    assert _exec(u)[1:] == ["-C", "/srv/outreach", "daemon"]
    assert check_invocation(_exec(u)) == "cli"
    assert s["Restart"] == "on-failure"
    assert s["KillSignal"] == "SIGTERM"
    assert parse_duration(s["TimeoutStopSec"]) >= timedelta(seconds=60)
    assert s["User"] not in ("", "root")
    assert s["ProtectSystem"] == "strict"
    assert "/srv/outreach" in s["ReadWritePaths"].split()
    assert s["NoNewPrivileges"] == "yes"
    assert u["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize(
    ("timer", "args"),
    [
        ("campaignctl-send.timer", ["send", "--quiet"]),
        ("campaignctl-sync.timer", ["sync"]),
    ],
)
def test_timer_pairs(timer, args):
    t = _unit(timer)
    service = t["Timer"]["Unit"]
    assert (UNITS / service).is_file()
    assert t["Timer"]["OnCalendar"]
    assert t["Install"]["WantedBy"] == "timers.target"
    u = _unit(service)
    s = u["Service"]
    assert s["Type"] == "oneshot"
    argv = _exec(u)
    assert argv[1:3] == ["-C", "/srv/outreach"]
    assert argv[3 : 3 + len(args)] == args
    assert check_invocation(argv) == "cli"
    assert "75" in s["SuccessExitStatus"].split()
    assert s["KillSignal"] == "SIGTERM"
    assert s["ProtectSystem"] == "strict"
    assert "/srv/outreach" in s["ReadWritePaths"].split()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_units_pass_systemd_analyze_verify(tmp_path):
    """systemd's own parser: unknown keys or bad values print a warning."""
    for unit in UNITS.iterdir():
        # verify wants ExecStart to exist; any executable stands in for campaignctl.
        text = unit.read_text().replace("/usr/local/bin/campaignctl", sys.executable)
        (tmp_path / unit.name).write_text(text)
    r = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout + r.stderr == ""


def test_check_invocation_catches_a_wrong_option():
    with pytest.raises(AssertionError, match="no option --chanel"):
        check_invocation(["campaignctl", "-C", "/srv", "leads", "optout", "x", "--chanel", "y"])
    assert check_invocation(["campaignctl", "leads", "optout", "x", "--channel", "sms"]) == "cli"
    with pytest.raises(AssertionError, match="--quite"):
        check_invocation(["campaignctl", "send", "--quite"])

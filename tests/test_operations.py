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
from tests.support import REPO

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
    # a configuration error and refused credentials need a person: no restart loop
    assert {"2", "78"} <= set(s["RestartPreventExitStatus"].split())
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
    assert "78" not in s["SuccessExitStatus"].split()  # refused credentials must alert
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


def _sh_lines(section: str) -> list[str]:
    """The lines of the ```sh blocks under a `## section` of docs/operations.md."""
    text = DOC.read_text()
    m = re.search(rf"(?ms)^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text)
    assert m, f"docs/operations.md has no section {section!r}"
    blocks = re.findall(r"```sh\n(.*?)```", m.group(1), re.S)
    assert blocks, f"no ```sh block under {section!r}"
    return [ln.split("  #")[0].strip() for b in blocks for ln in b.splitlines() if ln.strip()]


def _commands(lines: list[str]) -> list[list[str]]:
    """Each shell command of the lines (split at && and ;), without `sudo` and env settings."""
    out = []
    for ln in lines:
        for part in re.split(r"&&|;", ln):
            words = shlex.split(part)
            while words and (words[0] == "sudo" or re.fullmatch(r"[A-Z_]+=\S*", words[0])):
                words.pop(0)
            if words:
                out.append(words)
    return out


def _services() -> list[str]:
    return sorted(p.name for p in UNITS.glob("*.service"))


@pytest.mark.parametrize("service", _services())
def test_every_unit_runs_a_valid_campaignctl_command(service):
    argv = _exec(_unit(service))
    assert argv[0] == "/usr/local/bin/campaignctl"
    assert check_invocation(argv) == "cli"


def test_install_steps_put_campaignctl_where_the_units_call_it():
    """The documented install creates the ExecStart path: a venv whose console script is
    linked (or a pipx install whose PIPX_BIN_DIR is) /usr/local/bin."""
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "campaignctl" in scripts  # so the venv's bin/ gets a campaignctl command
    cmds = _commands(_sh_lines("Installing on a server"))
    venv = next(c[-1] for c in cmds if c[:3] == ["python3", "-m", "venv"])
    assert [f"{venv}/bin/pip", "install", "."] in cmds
    links = [c for c in cmds if c[:2] == ["ln", "-sf"]]
    assert links == [["ln", "-sf", f"{venv}/bin/campaignctl", "/usr/local/bin/campaignctl"]]
    for service in _services():
        assert _exec(_unit(service))[0] == links[0][-1]
    assert "PIPX_BIN_DIR=/usr/local/bin pipx install ." in DOC.read_text()


def test_install_steps_copy_and_enable_every_unit():
    cmds = _commands(_sh_lines("systemd"))
    copied = {
        Path(a).name
        for c in cmds
        if c[0] == "cp" and c[-1] == "/etc/systemd/system/"
        for a in c[1:-1]
    }
    assert copied == {p.name for p in UNITS.iterdir()}
    enabled = {u for c in cmds if c[:3] == ["systemctl", "enable", "--now"] for u in c[3:]}
    named = {u if "." in u else f"{u}.service" for u in enabled}
    assert named <= copied
    for timer in (n for n in copied if n.endswith(".timer")):
        assert timer in named, f"{timer} is copied but never enabled"
        assert _unit(timer)["Timer"]["Unit"] in copied
    created = {c[-1] for c in cmds if c[0] == "install"}
    for service in _services():
        env_file = _unit(service)["Service"]["EnvironmentFile"].lstrip("-")
        assert env_file in created, f"{service}: {env_file} is not created by the steps"
        work = _unit(service)["Service"]["WorkingDirectory"]
        assert work in created, f"{service}: {work} is not created by the steps"

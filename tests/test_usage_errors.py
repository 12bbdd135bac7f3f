"""Usage errors look like every other error, and shell completion is there when asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (["send", "--bogus"], "No such option: --bogus", "campaignctl send --help"),
        (["leads", "import"], "Missing argument 'CSV'.", "campaignctl leads import --help"),
        (
            ["status", "--format", "xml"],
            "Invalid value for '--format': ",
            "campaignctl status --help",
        ),
        (["sendd"], "No such command 'sendd'. Did you mean 'send'?", "campaignctl --help"),
    ],
)
def test_usage_errors_are_one_line_and_a_hint(cli, project, args, message, hint):
    r = cli("-C", project, *args)
    assert r.exit_code == 2
    assert r.stdout == ""
    first, second = r.stderr.splitlines()  # nothing else: no Usage block, no "Error:"
    assert first.startswith(f"campaignctl: error: {message}")
    assert second == f"hint: run `{hint}`"


def test_a_usage_error_from_the_real_command_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "campaignctl", "send", "--quite"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "campaignctl: error: No such option: --quite (Possible options: --quiet, --step)",
        "hint: run `campaignctl send --help`",
    ]


def test_bare_command_still_shows_the_help(cli):
    r = cli()
    assert r.exit_code == 2
    assert "Usage: campaignctl [OPTIONS] COMMAND" in r.output
    assert "campaignctl: error" not in r.output


def test_show_completion_prints_a_bash_script(cli, monkeypatch):
    # Typer's switch for tests: the shell is an argument instead of detected from the parent
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    r = cli("--show-completion", "bash")
    assert r.exit_code == 0, r.output
    assert "_campaignctl_completion()" in r.stdout
    assert "complete -o default -F _campaignctl_completion campaignctl" in r.stdout
    assert "_CAMPAIGNCTL_COMPLETE=complete_bash" in r.stdout


def test_completion_completes_commands_and_options():
    env = {
        "PYTHONPATH": str(REPO),
        "PATH": "/usr/bin:/bin",
        "_CAMPAIGNCTL_COMPLETE": "complete_bash",
    }
    for words, cword, expected in (
        ("campaignctl s", "1", "send"),
        ("campaignctl send --q", "2", "--quiet"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "campaignctl"],
            env={**env, "COMP_WORDS": words, "COMP_CWORD": cword},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert expected in r.stdout.split()

"""Docs that cannot drift: every command and option has help, every command is in the README,
docs/cli.md holds every command's current --help, and CI runs exactly the README's test command."""

import io
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from cogapp import Cog

from campaignctl.cli import app
from tests.support import REPO

README = (REPO / "README.md").read_text()


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every visible command and group under `cmd`, with its path (`("leads", "import")`)."""
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        if getattr(sub, "hidden", False):
            continue
        yield (*path, name), sub
        yield from walk(sub, (*path, name))


ROOT = typer.main.get_command(app)
COMMANDS = list(walk(ROOT))
IDS = [" ".join(p) for p, _ in COMMANDS]


def test_the_tree_is_walked():
    # The commands of this branch; other branches add theirs and are picked up by the walk.
    assert {"check", "init", "preview"} <= set(IDS)


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_command_has_help(path, cmd):
    assert (cmd.help or "").strip(), f"`campaignctl {' '.join(path)}` has no help text"


@pytest.mark.parametrize(("path", "cmd"), [((), ROOT), *COMMANDS], ids=["(root)", *IDS])
def test_every_option_has_help(path, cmd):
    missing = [
        p.opts[0]
        for p in cmd.params
        if p.param_type_name == "option" and not getattr(p, "hidden", False) and not p.help
    ]
    assert not missing, f"campaignctl {' '.join(path)}: options without help: {missing}"


@pytest.mark.parametrize("path", IDS)
def test_command_is_in_the_readme(path):
    assert re.search(rf"campaignctl {re.escape(path)}\b", README), (
        f"README.md does not mention `campaignctl {path}`: add it under ## Commands"
    )


def readme_test_command() -> str:
    after = README.split("\nInstall the test dependencies", 1)[1]
    block = re.search(r"^```sh\n(.*?)\n```$", after, re.S | re.M)
    assert block, "no ```sh block after 'Install the test dependencies' in README.md"
    return block.group(1)


def test_ci_runs_exactly_the_readme_test_command():
    script = (REPO / ".ci" / "run").read_text()
    # Run the script's own extraction (its `cmd=$(...)` line), not a copy of it.
    [extract] = [line for line in script.splitlines() if line.startswith("cmd=$(")]
    out = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; {extract}; printf %s "$cmd"'],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    command = readme_test_command()
    assert out.stdout == command
    assert "pytest" in command
    assert "set -euo pipefail" in script
    assert script.rstrip().endswith('bash -c "$cmd"')


def test_cli_reference_is_current():
    # docs/cli.md's cog block runs every command's --help; --check regenerates in memory and
    # compares, so a new command, option or help text shows up here until the page is rebuilt.
    cog = Cog()
    out = io.StringIO()
    cog.set_output(stdout=out, stderr=out)
    status = cog.main(["cog", "--check", str(REPO / "docs" / "cli.md")])
    assert status == 0, f"docs/cli.md is stale: run `cog -r docs/cli.md`\n{out.getvalue()}"

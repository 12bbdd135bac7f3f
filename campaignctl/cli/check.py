"""`check`: validate the campaign file, its templates and every step for sample leads."""

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from campaignctl.cli.context import print_json, state
from campaignctl.errors import ExitCode

if TYPE_CHECKING:
    from campaignctl.errors import Problem


class CheckFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


def _gh_escape(value: str, prop: bool = False) -> str:
    # GitHub's workflow-command encoding: data escapes % CR LF; properties also : and ,
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value.replace(":", "%3A").replace(",", "%2C") if prop else value


def _github(p: "Problem") -> str:
    level = "error" if p.severity == "error" else "warning"
    props = [f"file={_gh_escape(str(p.file), True)}"] if p.file else []
    if p.line:
        props.append(f"line={p.line}")
    msg = f"{p.path}: {p.message}" if p.path else p.message
    head = f"::{level} {','.join(props)}" if props else f"::{level}"
    return f"{head}::{_gh_escape(msg)}"


def check(
    ctx: typer.Context,
    fmt: CheckFormat = typer.Option(
        CheckFormat.text,
        "--format",
        help="text (one problem per line, then a summary), json, or github annotations.",
    ),
    leads: Path | None = typer.Option(
        None,
        "--leads",
        metavar="CSV",
        help="Render every step for every lead of this CSV (read as `leads import` would).",
    ),
) -> None:
    """Validate the campaign file and its templates, and render every step for sample leads.

    Sample leads come from --leads CSV, else the first 200 of the database when it exists,
    else a built-in set.
    Exits 1 when any problem is an error; warnings alone exit 0.
    """
    from campaignctl.checks import run_checks
    from campaignctl.config import find_config

    report = run_checks(find_config(state(ctx).config_path), leads_csv=leads)
    if fmt is CheckFormat.json:
        print_json(
            {
                "ok": not report.errors,
                "problems": [
                    {
                        "severity": p.severity,
                        "path": p.path,
                        "line": p.line,
                        "file": str(p.file) if p.file else None,
                        "message": p.message,
                    }
                    for p in report.problems
                ],
                "samples": report.samples,
                "sample_source": report.sample_source,
                "rendered": report.rendered,
            }
        )
    elif fmt is CheckFormat.github:
        for p in report.problems:
            typer.echo(_github(p))
    else:
        for p in report.problems:
            typer.echo(f"{p.severity}: {p}")
        typer.echo(report.summary())
    if report.errors:
        raise typer.Exit(int(ExitCode.FAILED))


def register(app: typer.Typer) -> None:
    app.command()(check)

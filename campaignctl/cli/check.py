"""`check`: validate the campaign file (CI runs this on every change)."""

from __future__ import annotations

from enum import StrEnum

import typer

from campaignctl.cli.context import print_json, state
from campaignctl.errors import ExitCode


class CheckFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


def check(
    ctx: typer.Context,
    fmt: CheckFormat = typer.Option(
        CheckFormat.text, "--format", help="text, json, or github annotations."
    ),
) -> None:
    """Validate the campaign file; exit 1 when it has errors."""
    from campaignctl.config import find_config, read_text, validate_text

    path = find_config(state(ctx).config_path)
    _cfg, problems = validate_text(read_text(path), path)
    errors = [p for p in problems if p.severity == "error"]
    if fmt is CheckFormat.json:
        print_json(
            {
                "ok": not errors,
                "problems": [
                    {
                        "severity": p.severity,
                        "path": p.path,
                        "line": p.line,
                        "file": str(p.file) if p.file else None,
                        "message": p.message,
                    }
                    for p in problems
                ],
            }
        )
    elif fmt is CheckFormat.github:
        for p in problems:
            level = "error" if p.severity == "error" else "warning"
            loc = f"file={p.file}" + (f",line={p.line}" if p.line else "")
            typer.echo(f"::{level} {loc}::{p.path + ': ' if p.path else ''}{p.message}")
    else:
        for p in problems:
            typer.echo(f"{p.severity}: {p}", err=True)
        typer.echo(f"{path}: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
    if errors:
        raise typer.Exit(int(ExitCode.FAILED))


def register(app: typer.Typer) -> None:
    app.command()(check)

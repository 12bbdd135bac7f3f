"""`init`: scaffold a project folder."""

import shlex
from pathlib import Path

import typer


def init(
    directory: Path = typer.Argument(
        Path("."), metavar="[DIR]", help="Folder to create the project in [default: here]."
    ),
) -> None:
    """Write campaigns.toml, templates/welcome.md.j2 and a sample leads.csv (outbox channel)."""
    from campaignctl.project import init_project

    for path in init_project(directory):
        typer.echo(f"created {path}")
    cd = "" if directory == Path(".") else f"cd {shlex.quote(str(directory))}\n  "
    typer.echo(
        "next:\n"
        f"  {cd}campaignctl leads import leads.csv\n"
        "  campaignctl check\n"
        "  campaignctl preview welcome\n"
        '  campaignctl send          # after setting status = "active" in campaigns.toml'
    )


def register(app: typer.Typer) -> None:
    app.command()(init)

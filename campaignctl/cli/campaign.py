"""`campaign`, `step` and `channel set`: read and edit the campaign file from the command line.

Each editing command calls one function of `campaignctl.config.edit`, which keeps comments and
layout, runs every check of `check` on the result (exit 2, nothing written, on an error) and
writes atomically.
"""

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from campaignctl.cli.context import TableOrJson, print_json, state, stdout
from campaignctl.errors import UsageError

if TYPE_CHECKING:
    from campaignctl.config.edit import Outcome

campaign_app = typer.Typer(
    help="List, show, add, change, start, pause, resume and remove campaigns in the campaign file.",
    no_args_is_help=True,
)
step_app = typer.Typer(help="Add, change and remove the steps of a campaign.", no_args_is_help=True)
channel_app = typer.Typer(help="Change a channel's limits and hours.", no_args_is_help=True)


FORCE_HELP = "Go ahead even though the edit removes or renames a step that has sent messages."
ASSIGNMENTS_HELP = (
    "KEY=VALUE pairs. VALUE takes the key's type: text keys (from, subject, body, delay) keep "
    'it as a string, others read a TOML literal (2, true, ["reply"]); an empty VALUE removes '
    "the key. Dotted keys reach nested tables."
)


def _config_path(ctx: typer.Context) -> Path:
    from campaignctl.config import find_config

    return find_config(state(ctx).config_path)


def _report(outcome: "Outcome") -> None:
    typer.echo(f"{outcome.path}: {outcome.summary}" + ("" if outcome.changed else " (no change)"))
    for w in outcome.warnings:
        typer.echo(f"warning: {w}", err=True)


# ---------------------------------------------------------------- campaign


@campaign_app.command("list")
def campaign_list(
    ctx: typer.Context,
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table or json."),
) -> None:
    """List the campaigns: kind, status, priority, audience, steps and channels."""
    from campaignctl.config.edit import campaign_rows

    rows = campaign_rows(state(ctx).config())
    if fmt is TableOrJson.json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("name", "kind", "status", "priority", "audience", "steps", "channels")
    for r in rows:
        table.add_row(
            r["name"],
            r["kind"],
            r["status"],
            str(r["priority"]),
            r["audience"] or "(every lead)",
            str(r["steps"]),
            ", ".join(r["channels"]),
        )
    stdout().print(table)


@campaign_app.command("show")
def campaign_show(
    ctx: typer.Context, name: str = typer.Argument(..., help="Campaign name.")
) -> None:
    """Show one campaign: its settings and its steps."""
    from rich.table import Table

    from campaignctl.config.edit import campaign_detail

    d = campaign_detail(state(ctx).config(), name)
    out = stdout()
    out.print(f"[bold]{d['name']}[/bold]  {d['kind']}, {d['status']}, priority {d['priority']}")
    if d["description"]:
        out.print(d["description"], markup=False)
    out.print(f"audience: {d['audience'] or '(every lead)'}", markup=False)
    out.print(f"stop on: {', '.join(d['stop_on']) or '(nothing)'}")
    if d["start_at"]:
        out.print(f"starts at: {d['start_at']}")
    table = Table("#", "step", "channel", "delay", "subject / body", "variants")
    for i, s in enumerate(d["steps"], start=1):
        table.add_row(
            str(i), s["name"], s["channel"], s["delay"], s["content"], ", ".join(s["variants"])
        )
    out.print(table if d["steps"] else "no steps yet: add one with `campaignctl step add`")


@campaign_app.command("add")
def campaign_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="New campaign name (letters, digits, '-', '_')."),
    # Values are checked by the same validation as `check`, not by a second list here.
    kind: str = typer.Option("sequence", "--kind", help="sequence, blast or trigger."),
    audience: str | None = typer.Option(
        None, "--audience", help="Lead filter expression [default: every lead]."
    ),
    status: str = typer.Option(
        "draft", "--status", help="draft, active, paused, completed or archived."
    ),
    priority: int | None = typer.Option(
        None, "--priority", help="Lower goes first on a shared channel [default: 10]."
    ),
) -> None:
    """Add a campaign (a draft sequence for every lead unless told otherwise)."""
    from campaignctl.config.edit import add_campaign

    _report(
        add_campaign(
            _config_path(ctx),
            name,
            kind=kind,
            status=status,
            audience=audience,
            priority=priority,
        )
    )


@campaign_app.command("set")
def campaign_set(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Campaign name."),
    assignments: list[str] = typer.Argument(..., help=ASSIGNMENTS_HELP, metavar="KEY=VALUE..."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Change keys of a campaign, e.g. priority=2 audience=city == 'Manila'."""
    from campaignctl.config.edit import set_campaign

    _report(set_campaign(_config_path(ctx), name, assignments, force=force))


@campaign_app.command("start")
def campaign_start(
    ctx: typer.Context, name: str = typer.Argument(..., help="Campaign name.")
) -> None:
    """Start a draft or paused campaign (status = "active"), after the checks of `check`."""
    from campaignctl.config.edit import start_campaign

    _report(start_campaign(_config_path(ctx), name))


@campaign_app.command("pause")
def campaign_pause(
    ctx: typer.Context, name: str = typer.Argument(..., help="Campaign name.")
) -> None:
    """Pause an active campaign (writes status = "paused" to the file)."""
    from campaignctl.config.edit import set_status

    _report(set_status(_config_path(ctx), name, "paused"))


@campaign_app.command("resume")
def campaign_resume(
    ctx: typer.Context, name: str = typer.Argument(..., help="Campaign name.")
) -> None:
    """Resume a paused campaign (writes status = "active" to the file)."""
    from campaignctl.config.edit import set_status

    _report(set_status(_config_path(ctx), name, "active"))


@campaign_app.command("remove")
def campaign_remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Campaign name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(
        False, "--force", help="Remove it even though the store has messages sent for it."
    ),
) -> None:
    """Remove a campaign and its steps from the file."""
    from campaignctl.config.edit import remove_campaign

    path = _config_path(ctx)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"{path}: removing campaign {name!r} needs confirmation",
                f"run it on a terminal, or add --yes: `campaignctl campaign remove {name} --yes`",
            )
        typer.confirm(f"Remove campaign {name!r} and its steps from {path}?", abort=True)
    _report(remove_campaign(path, name, force=force))


# ---------------------------------------------------------------- step


@step_app.command("add")
def step_add(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help="Campaign name."),
    channel: str = typer.Option(..., "--channel", help="A channel from [channels]."),
    delay: str = typer.Option(
        ..., "--delay", help="After enrolment (first step) or the previous send: 0s, 2d, 1h30m."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Step name, unique in the campaign [default: stepN]."
    ),
    subject: str | None = typer.Option(None, "--subject", help="Subject (email steps)."),
    body: str | None = typer.Option(None, "--body", help="Inline Jinja2 body."),
    template: str | None = typer.Option(
        None, "--template", help="Template file (written relative to the campaign file)."
    ),
    after: str | None = typer.Option(
        None, "--after", help="Insert after this step [default: at the end]."
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Add a step to a campaign (give --body or --template)."""
    from campaignctl.config.edit import add_step

    if (body is None) == (template is None):
        raise UsageError(
            "step add: give exactly one of --body or --template",
            f'for example: campaignctl step add {campaign} --channel CH --delay 2d --body "Hi"',
        )
    _report(
        add_step(
            _config_path(ctx),
            campaign,
            channel=channel,
            delay=delay,
            name=name,
            subject=subject,
            body=body,
            template=template,
            after=after,
            force=force,
        )
    )


@step_app.command("remove")
def step_remove(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help="Campaign name."),
    step: str = typer.Argument(..., help="Step name."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Remove a step from a campaign."""
    from campaignctl.config.edit import remove_step

    _report(remove_step(_config_path(ctx), campaign, step, force=force))


@step_app.command("set")
def step_set(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help="Campaign name."),
    step: str = typer.Argument(..., help="Step name."),
    assignments: list[str] = typer.Argument(..., help=ASSIGNMENTS_HELP, metavar="KEY=VALUE..."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Change keys of a step, e.g. delay=3d content_variables.1=x variants.A.subject=Hi."""
    from campaignctl.config.edit import set_step

    _report(set_step(_config_path(ctx), campaign, step, assignments, force=force))


# ---------------------------------------------------------------- channel


@channel_app.command("set")
def channel_set(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Channel name."),
    assignments: list[str] = typer.Argument(..., help=ASSIGNMENTS_HELP, metavar="KEY=VALUE..."),
) -> None:
    """Change a channel's keys, e.g. daily_limit=250 window=09:00-20:00."""
    from campaignctl.config.edit import set_channel

    _report(set_channel(_config_path(ctx), name, assignments))


def register(app: typer.Typer) -> None:
    app.add_typer(campaign_app, name="campaign")
    app.add_typer(step_app, name="step")
    app.add_typer(channel_app, name="channel")

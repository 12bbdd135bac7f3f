"""`draft`: variants of a step written by a language model (through `llm`), added as drafts;
`draft approve`, `draft reject` and `draft list` review them.

`campaignctl draft CAMPAIGN STEP --variants N` is the spelling of the design: the group reads
arguments that name none of its commands as `draft new ...` (`_DraftGroup`). A campaign named
like a subcommand (`list`, `new`, `approve`, `reject`) is reached with `draft new NAME ...`.
"""

from typing import Any

import typer
from typer.core import TyperGroup

from campaignctl.cli.campaign import _config_path, _report
from campaignctl.cli.context import TableOrJson, print_json, state, stdout


class _DraftGroup(TyperGroup):
    """`draft C S ...` is `draft new C S ...`; `draft approve ...` and `--help` are as usual."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["new", *args]
        return list(super().parse_args(ctx, args))


draft_app = typer.Typer(
    cls=_DraftGroup,
    help="Model-written variants of a step, added as drafts that are never sent until approved."
    "\n\nThe model is reached through the llm library (pip install 'campaignctl[ai]'). "
    "`campaignctl draft CAMPAIGN STEP --variants N` is `draft new CAMPAIGN STEP --variants N`.",
    no_args_is_help=True,
)

CAMPAIGN = typer.Argument(..., help="Campaign name, as in [campaigns.NAME].")
STEP = typer.Argument(..., help="Step name.")
VARIANT = typer.Argument(..., help="Variant name, as `draft list` shows it (draft-1, ...).")


@draft_app.command("new")
def draft_new(
    ctx: typer.Context,
    campaign: str = CAMPAIGN,
    step: str = STEP,
    variants: int = typer.Option(
        ..., "--variants", "-n", metavar="N", help="How many variants to write (1 to 10)."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        metavar="M",
        help="An llm model id or alias (see `llm models`) [default: llm's default model].",
    ),
    prompt: str | None = typer.Option(
        None,
        "--prompt",
        metavar="TEXT",
        help="More instructions for the model (tone, length, language).",
    ),
) -> None:
    """Ask a model for N subject (email) or body (SMS) variants of a step, added as drafts.

    The model sees the step's text, the campaign's description and audience, the merge fields
    the step uses and the fields of up to 5 sample leads (never their email or phone): that
    lead data goes to the model's provider. Nothing is written when the reply is unusable,
    or when a variant drops a merge field or opt-out wording (exit 2; 75 when the provider
    cannot be reached)."""
    from campaignctl.draft import draft

    _report(draft(_config_path(ctx), campaign, step, variants, model=model, extra=prompt))


@draft_app.command("approve")
def draft_approve(
    ctx: typer.Context, campaign: str = CAMPAIGN, step: str = STEP, variant: str = VARIANT
) -> None:
    """Let the engine send a draft variant (removes its status key), after checking it."""
    from campaignctl.config.edit import approve_variant

    _report(approve_variant(_config_path(ctx), campaign, step, variant))


@draft_app.command("reject")
def draft_reject(
    ctx: typer.Context, campaign: str = CAMPAIGN, step: str = STEP, variant: str = VARIANT
) -> None:
    """Remove a draft variant from the campaign file."""
    from campaignctl.config.edit import reject_variant

    _report(reject_variant(_config_path(ctx), campaign, step, variant))


@draft_app.command("list")
def draft_list(
    ctx: typer.Context,
    campaign: str | None = typer.Argument(None, help="Only this campaign's drafts."),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table or json."),
) -> None:
    """List the draft variants waiting for review: campaign, step, name, subject or body."""
    from campaignctl.draft import draft_rows

    rows = draft_rows(state(ctx).config(), campaign)
    if fmt is TableOrJson.json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no draft variants")
        return
    from rich.table import Table

    table = Table("campaign", "step", "variant", "subject / body")
    for r in rows:
        table.add_row(r["campaign"], r["step"], r["variant"], r["content"])
    stdout().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(draft_app, name="draft")

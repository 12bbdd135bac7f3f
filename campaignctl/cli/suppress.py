"""`suppress import`, `suppress list`, `suppress remove`: the do-not-contact list."""

from pathlib import Path

import typer

from campaignctl.cli.context import TableOrJson, check_names, print_json, state, stdout

suppress_app = typer.Typer(
    name="suppress",
    help="Addresses that may never be contacted (kept as keyed hashes), leads or not.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

#: Notes printed after `suppress import`.
NOTES_SHOWN = 20
_CHANNEL_HELP = "Only on this channel (default: every channel)."


@suppress_app.command("import")
def import_(
    ctx: typer.Context,
    csv_path: Path = typer.Argument(
        ..., metavar="CSV", help="A CSV file with an email or phone column (as `leads import`)."
    ),
    channel: str | None = typer.Option(None, "--channel", metavar="CHANNEL", help=_CHANNEL_HELP),
    mapping: list[str] = typer.Option(
        [],
        "--map",
        metavar="FIELD=COLUMN",
        help="Read email or phone from COLUMN when its header does not map by itself "
        "(as `leads import --map`). Repeatable.",
    ),
) -> None:
    """Suppress every address of a CSV file: added, already suppressed, rejected (by line)."""
    from campaignctl.store import utcnow
    from campaignctl.suppress_list import import_file

    st = state(ctx)
    cfg = st.config()
    check_names(cfg, channels=[channel] if channel else None)
    report = import_file(st.store, cfg, csv_path, channel, utcnow(), mapping)
    where = "every channel" if report.channel == "*" else f"channel {report.channel}"
    out = stdout()
    out.print(
        f"{report.path}: {report.added:,} address(es) added to the suppression list ({where}), "
        f"{report.already:,} already suppressed, {report.rejected:,} row(s) rejected",
        markup=False,
        highlight=False,
    )
    for note in report.notes[:NOTES_SHOWN]:
        out.print(note, markup=False, highlight=False)
    if len(report.notes) > NOTES_SHOWN:
        out.print(f"... and {len(report.notes) - NOTES_SHOWN:,} more", markup=False)


@suppress_app.command("list")
def list_(
    ctx: typer.Context,
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table or json."),
) -> None:
    """List the suppressed hashes: channel, source, when, and the lead that has the address."""
    from campaignctl.suppress_list import HASH_SHOWN, listing

    rows = listing(state(ctx).store(read_only=True))
    if fmt is TableOrJson.json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(caption=f"{len(rows)} suppressed address(es)")
    for column in ("hash", "channel", "source", "note", "created_at", "lead"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["hash"][:HASH_SHOWN],
            r["channel"],
            r["source"],
            r["note"] or "",
            r["created_at"],
            r["lead"] or "",
        )
    stdout().print(table)


@suppress_app.command("remove")
def remove(
    ctx: typer.Context,
    address: str = typer.Argument(
        ..., metavar="ADDRESS", help="The email, or phone in any usual format."
    ),
    channel: str | None = typer.Option(
        None,
        "--channel",
        metavar="CHANNEL",
        help="Only its suppression on this channel (default: on every channel it is on).",
    ),
) -> None:
    """Take an address off the suppression list: it may be messaged again."""
    from campaignctl.suppress_list import remove as remove_address

    st = state(ctx)
    cfg = st.config()
    check_names(cfg, channels=[channel] if channel else None)
    gone = remove_address(st.store, cfg, address, channel)
    typer.echo(
        f"{address} removed from the suppression list ({gone} entr{'y' if gone == 1 else 'ies'})."
    )


def register(app: typer.Typer) -> None:
    app.add_typer(suppress_app, name="suppress")

"""`messages list`: every message, filtered, written as the database hands the rows over."""

import sys
from collections.abc import Iterable
from typing import Any

import typer

from campaignctl.cli.context import TableCsvJson, state, stdout

messages_app = typer.Typer(
    name="messages",
    help="List the messages campaigns have queued, sent and skipped.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help, like the root app (start-up time)
)

#: Rows a table shows; csv and json write every row.
TABLE_ROWS = 500


@messages_app.command("list")
def list_(
    ctx: typer.Context,
    campaign: str | None = typer.Option(None, "--campaign", metavar="C", help="Only campaign C."),
    step: str | None = typer.Option(None, "--step", metavar="S", help="Only step S."),
    status: str | None = typer.Option(
        None,
        "--status",
        metavar="S",
        help="Only messages in this state: pending, sending, sent, failed, skipped, uncertain.",
    ),
    lead: str | None = typer.Option(
        None, "--lead", metavar="EMAIL_OR_PHONE", help="Only this lead's messages."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="DATE",
        help="Only messages changed since DATE (YYYY-MM-DD or YYYY-MM-DDTHH:MM, in "
        "settings.timezone).",
    ),
    fmt: TableCsvJson = typer.Option(TableCsvJson.table, "--format", help="table, csv or json."),
) -> None:
    """List messages: lead, campaign, step, channel, variant, status, reason (and its code),
    provider id, attempts, due/claimed/sent times (UTC). csv and json stream every row; the
    table shows the first 500."""
    from campaignctl.message_listing import COLUMNS, list_messages

    st = state(ctx)
    rows = list_messages(
        st.config(),
        st.store(read_only=True),
        campaign=campaign,
        step=step,
        status=status,
        lead=lead,
        since=since,
    )
    if fmt is TableCsvJson.csv:
        write_csv(COLUMNS, rows)
    elif fmt is TableCsvJson.json:
        write_json(COLUMNS, rows)
    else:
        _table(COLUMNS, rows)


def write_csv(columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    """A header, then one line per row as it comes."""
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)  # consumes the iterator row by row


def write_json(columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    """A JSON array of objects, written one object at a time (never built in memory)."""
    import json

    out = sys.stdout
    out.write("[")
    sep = "\n"
    for row in rows:
        out.write(sep + json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False))
        sep = ",\n"
    out.write("\n]\n" if sep != "\n" else "]\n")


def _table(columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    from rich.table import Table

    shown: list[tuple[Any, ...]] = []
    more = 0
    for row in rows:
        if len(shown) < TABLE_ROWS:
            shown.append(row)
        else:
            more += 1  # counted, not kept
    caption = f"{len(shown):,} message(s)"
    if more:
        caption = (
            f"first {len(shown):,} of {len(shown) + more:,} messages: "
            "--format csv (or json) writes them all"
        )
    table = Table(caption=caption)
    for c in columns:
        table.add_column(c, overflow="fold", justify="right" if c in ("id", "attempts") else "left")
    for row in shown:
        table.add_row(*("" if v is None else str(v) for v in row))
    stdout().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(messages_app, name="messages")

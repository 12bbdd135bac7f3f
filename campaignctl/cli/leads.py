"""`leads import` and `leads list` (and, later, other `leads` subcommands)."""

import functools
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from campaignctl.cli.context import TableCsvJson, state, stderr, stdout
from campaignctl.store.fields import LEAD_FIXED_FIELDS

if TYPE_CHECKING:
    from campaignctl.leads import ImportReport

leads_app = typer.Typer(
    name="leads",
    help="Import, list and manage leads.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help, like the root app (start-up time)
)

#: Notes printed after an import; `--rejects FILE` has every one.
NOTES_SHOWN = 20
LIST_COLUMNS = LEAD_FIXED_FIELDS


class TagsMode(StrEnum):
    """`leads import --update --tags`."""

    MERGE = "merge"
    REPLACE = "replace"


@leads_app.command("import")
def import_(
    ctx: typer.Context,
    csv_path: Path = typer.Argument(..., metavar="CSV", help="The CSV file of leads."),
    mapping: list[str] = typer.Option(
        [],
        "--map",
        metavar="FIELD=COLUMN",
        help="Fill FIELD (email, phone, first_name, last_name, timezone, tags, country) from "
        "COLUMN when its header does not map by itself. Repeatable.",
    ),
    tags: list[str] = typer.Option(
        [], "--tag", metavar="TAG", help="Add TAG to every imported lead. Repeatable."
    ),
    rejects: Path | None = typer.Option(
        None,
        "--rejects",
        metavar="FILE",
        help="Write every rejected row, and every row imported with a field dropped, to FILE "
        "(original columns, then line and reason).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Read, check and count, but write nothing to the database."
    ),
    encoding: str | None = typer.Option(
        None,
        "--encoding",
        metavar="ENC",
        help="The file's text encoding (utf-8, cp1252, latin-1, cp1250, ...). Default: UTF-8 "
        "(with or without BOM), UTF-16 with a BOM, else a guess that is shown as a warning.",
    ),
    update: bool = typer.Option(
        False,
        "--update",
        help="Also update the leads already stored (found by email, else phone): fields, "
        "attributes and tags the row has; an empty cell erases nothing. Status, opt-outs, "
        "enrolments and history are never touched.",
    ),
    tags_mode: TagsMode | None = typer.Option(
        None,
        "--tags",
        help="With --update: merge (the default) adds the row's tags to the lead's; replace "
        "sets the lead's tags to the row's (a row with an empty tags cell leaves them).",
    ),
) -> None:
    """Import leads from a CSV file; duplicates are counted, never inserted twice (with
    --update, existing leads are updated instead)."""
    from campaignctl.leads import import_leads

    if tags_mode is not None and not update:
        from campaignctl.errors import UsageError

        raise UsageError(
            "--tags applies to leads already stored: it needs --update",
            f"campaignctl leads import {csv_path} --update --tags {tags_mode.value}",
        )
    st = state(ctx)
    cfg = st.config()
    err = stderr()
    run = functools.partial(
        import_leads,
        csv_path,
        cfg,
        st.store,
        mapping=mapping,
        tags=tags,
        rejects=rejects,
        dry_run=dry_run,
        encoding=encoding,
        update=update,
        tags_mode=(tags_mode or TagsMode.MERGE).value,
    )
    if err.is_terminal:
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(f"importing {csv_path.name}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = run(progress=progress)
    else:
        report = run()
    _render_import(report)


def _render_import(report: "ImportReport") -> None:
    from rich.table import Table

    for warning in report.warnings:
        typer.echo(f"campaignctl: warning: {warning}", err=True)
    out = stdout()
    title = f"{report.path}" + (" (dry run: nothing written)" if report.dry_run else "")
    table = Table(title=title, title_justify="left")
    counts = {"read": report.read, "inserted": report.inserted}
    if report.update:
        counts |= {"updated": report.updated, "unchanged": report.unchanged}
    counts |= {
        "duplicates": report.duplicates,
        "fields dropped": report.fields_dropped,
        "rejected": report.rejected,
    }
    for name in counts:
        table.add_column(name, justify="right")
    table.add_row(*(f"{n:,}" for n in counts.values()))
    out.print(table)
    mapped = ", ".join(f"{f} <- {c!r}" for f, c in report.columns.items())
    out.print(f"columns: {mapped}", markup=False, highlight=False)
    if report.suppressed:
        out.print(
            f"{report.suppressed:,} imported lead(s) have an address on the suppression list: "
            "they are never messaged there (`campaignctl suppress list`)",
            markup=False,
            highlight=False,
        )
    for change in report.changes[:NOTES_SHOWN]:
        out.print(str(change), markup=False, highlight=False)
    if report.updated > NOTES_SHOWN:
        more = report.updated - NOTES_SHOWN
        out.print(f"... and {more:,} more updated rows", markup=False, highlight=False)
    for note in report.notes[:NOTES_SHOWN]:
        out.print(str(note), markup=False, highlight=False)
    more = report.notes_total - min(len(report.notes), NOTES_SHOWN)
    if more > 0:
        where = (
            f"all are in {report.rejects_path}"
            if report.rejects_path
            else "--rejects FILE writes them all"
        )
        out.print(f"... and {more:,} more notes ({where})", markup=False, highlight=False)


@leads_app.command("list")
def list_(
    ctx: typer.Context,
    where: str | None = typer.Option(
        None,
        "--where",
        metavar="EXPR",
        help="Only leads matching an audience expression, e.g. \"status == 'new' and "
        "'buyer' in tags\".",
    ),
    fmt: TableCsvJson = typer.Option(TableCsvJson.table, "--format", help="table, csv or json."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, metavar="N", help="Show at most N leads."
    ),
) -> None:
    """List leads (with their attributes in csv and json)."""
    from campaignctl.leads.listing import Skipped, iter_leads

    st = state(ctx)
    store = st.store(read_only=True)
    skipped = Skipped()
    # each format streams (flat memory on a million leads): csv and json one lead at a time,
    # the table in pieces sized by its first rows
    if fmt is TableCsvJson.json:
        _print_json(iter_leads(store, where=where, limit=limit, skipped=skipped))
    elif fmt is TableCsvJson.csv:
        # the header names every attribute: a first pass finds them, a second writes the rows
        _print_csv(
            _attribute_keys(iter_leads(store, where=where, limit=limit)),
            iter_leads(store, where=where, limit=limit, skipped=skipped),
        )
    else:
        _print_table(iter_leads(store, where=where, limit=limit, skipped=skipped))
    if note := skipped.note():
        stderr().print(f"warning: {note}", markup=False, highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


def _attribute_keys(leads: Iterable[dict[str, Any]]) -> list[str]:
    """The csv's columns: the fixed ones, `optouts`, then each attribute in the order the
    leads first show it."""
    columns = [*LIST_COLUMNS, "optouts"]
    seen = set(columns)
    for lead in leads:
        for k in lead:
            if k not in seen and k != "id":
                seen.add(k)
                columns.append(k)
    return columns


def _print_csv(columns: list[str], leads: Iterable[dict[str, Any]]) -> None:
    import csv
    import sys

    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    for lead in leads:
        writer.writerow([_cell(lead.get(c)) for c in columns])


def _print_json(leads: Iterable[dict[str, Any]]) -> None:
    """`print_json(list(leads))`, byte for byte, written one lead at a time."""
    import json
    import sys

    out = sys.stdout
    first = True
    for lead in leads:
        text = json.dumps(lead, indent=2, ensure_ascii=False, default=str)
        out.write(("[\n" if first else ",\n") + "  " + text.replace("\n", "\n  "))
        first = False
    out.write("[]\n" if first else "\n]\n")


def _print_table(leads: Iterable[dict[str, Any]]) -> None:
    from campaignctl.cli.streamed import StreamedTable

    columns = (*LIST_COLUMNS, "optouts")
    table = StreamedTable(stdout(), columns, fold=("email", "phone"))
    for lead in leads:
        table.add([_cell(lead.get(c)) for c in columns])
    table.close(caption=f"{table.count} lead(s)")


def register(app: typer.Typer) -> None:
    app.add_typer(leads_app, name="leads")

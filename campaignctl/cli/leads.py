"""`leads import` and `leads list` (and, later, other `leads` subcommands)."""

import functools
import re
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


#: `leads list` shows up to this many leads as one table sized to them; a longer list streams,
#: this many rows at a time, in the columns the first rows sized (memory stays flat).
TABLE_BATCH = 1000
#: Line breaks and other control characters, shown as spaces in a streamed table's cells.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _print_table(leads: Iterable[dict[str, Any]]) -> None:
    from itertools import islice

    rows = iter(leads)
    first = list(islice(rows, TABLE_BATCH))
    following = list(islice(rows, TABLE_BATCH))
    if not following:
        stdout().print(_table(first, caption=f"{len(first)} lead(s)"))
        return
    # One table, its rows written as they come: Rich lays out the header in column widths the
    # first rows need (fitted to the terminal), each row is then padded to them (Rich would
    # take a millisecond a row). A longer address or phone folds onto more lines; another
    # longer cell is cut with an ellipsis.
    columns = (*LIST_COLUMNS, "optouts")
    widths = {c: max(len(c), *(len(_cell(lead.get(c))) for lead in first)) for c in columns}
    console = stdout()
    head = _rendered(console, _table([], widths=widths))
    spans = [len(edge) for edge in _plain(head[0]).rstrip()[1:-1].split("┳")]
    out = console.file
    out.write("".join(head[:-1]))  # all but the bottom edge
    fold = [c in ("email", "phone") for c in columns]
    shown = 0
    for piece in (first, following):
        shown += len(piece)
        out.write("".join(_row(lead, columns, spans, fold) for lead in piece))
    while piece := list(islice(rows, TABLE_BATCH)):
        shown += len(piece)
        out.write("".join(_row(lead, columns, spans, fold) for lead in piece))
    end = _table([], widths=widths, header=False, caption=f"{shown} lead(s)")
    out.write("".join(_rendered(console, end)[1:]))  # its bottom edge and the count


def _row(lead: dict[str, Any], columns: tuple[str, ...], spans: list[int], fold: list[bool]) -> str:
    """One lead as the lines of a table row: each cell padded to its column's span (a space
    either side when it has room, as Rich pads), folded onto more lines (`fold`) or cut with an
    ellipsis when longer."""
    from rich.cells import cell_len, chop_cells, set_cell_size

    cells: list[list[str]] = []
    pads: list[str] = []
    for column, span, folds in zip(columns, spans, fold, strict=True):
        pad = " " if span >= 3 else ""
        width = span - 2 * len(pad)
        pads.append(pad)
        text = _CONTROL.sub(" ", _cell(lead.get(column)))
        if cell_len(text) <= width:
            cells.append([text])
        elif folds and width > 0:
            cells.append(chop_cells(text, width))
        else:
            cells.append([set_cell_size(text, width - 1) + "…" if width > 0 else ""])
    lines = []
    for i in range(max(len(c) for c in cells)):
        parts = [
            pad + set_cell_size(c[i] if i < len(c) else "", span - 2 * len(pad)) + pad
            for c, span, pad in zip(cells, spans, pads, strict=True)
        ]
        lines.append("│" + "│".join(parts) + "│\n")
    return "".join(lines)


def _rendered(console: Any, table: Any) -> list[str]:
    """The lines Rich prints for `table` on `console` (its styles included)."""
    with console.capture() as captured:
        console.print(table)
    lines: list[str] = captured.get().splitlines(keepends=True)
    return lines


def _plain(line: str) -> str:
    from rich.text import Text

    return Text.from_ansi(line).plain


def _table(
    leads: list[dict[str, Any]],
    caption: str | None = None,
    widths: dict[str, int] | None = None,
    header: bool = True,
) -> Any:
    """The leads as a Rich table; `widths`: each column's, fixed (the frame of a long list)."""
    from rich.table import Table

    table = Table(caption=caption, show_header=header)
    # Fold rather than cut: a table piped to a file is 80 columns wide, and an address cut
    # with an ellipsis is useless. Addresses and phones keep their full width when they can.
    for column in (*LIST_COLUMNS, "optouts"):
        fold = column in ("email", "phone")
        if widths is not None:
            table.add_column(column, width=widths[column], no_wrap=True)
        elif fold:
            widest = max((len(_cell(lead.get(column))) for lead in leads), default=0)
            table.add_column(column, overflow="fold", min_width=min(widest, 32))
        else:
            table.add_column(column)
    for lead in leads:
        table.add_row(*(_cell(lead.get(c)) for c in (*LIST_COLUMNS, "optouts")))
    return table


def register(app: typer.Typer) -> None:
    app.add_typer(leads_app, name="leads")

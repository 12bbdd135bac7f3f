"""`trigger CAMPAIGN --data FILE.json|-`: one event enrols a trigger campaign's matches."""

import sys
from enum import StrEnum
from pathlib import Path

import typer

from campaignctl.cli.context import print_json, state, stdout


class TableJson(StrEnum):
    table = "table"
    json = "json"


def trigger(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help='A campaign with kind = "trigger".'),
    data: str = typer.Option(
        ...,
        "--data",
        metavar="FILE.json|-",
        help='The event: a JSON object with an "id" (string or integer), from a file or - '
        "for stdin. Audience and templates see it as `item`.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List who would get it (count and first leads); write nothing."
    ),
    limit: int = typer.Option(10, "--limit", min=0, help="Leads a dry run lists."),
    fmt: TableJson = typer.Option(TableJson.table, "--format", help="table or json."),
) -> None:
    """Enrol the leads a trigger campaign's audience picks for one event (a new listing,
    say): `item.X` in the audience and the templates is the event's X. The event is recorded,
    and its matches enrolled, in one transaction: the same event id never enrols anyone twice,
    even from two processes at once. Each match gets the first step's message about this
    event; `send` (or the daemon) sends it within windows, limits and opt-outs.

    Exit 2 for an event that is not a JSON object with an "id".
    """
    from campaignctl.errors import UsageError
    from campaignctl.store import utcnow
    from campaignctl.trigger import parse_event, run

    if data == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        try:
            text, source = Path(data).read_text(encoding="utf-8"), data
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise UsageError(f"--data {data}: cannot read: {why}") from None
    event = parse_event(text, source)
    st = state(ctx)
    cfg = st.config()
    store = st.store(read_only=dry_run)
    try:
        result = run(cfg, store, campaign, event, utcnow(), dry_run=dry_run, limit=limit)
    finally:
        store.close()
    if fmt is TableJson.json:
        out = {
            "campaign": result.campaign,
            "event": result.event_id,
            "dry_run": result.dry_run,
            "enrolled": 0 if result.duplicate else result.enrolled,
            "duplicate": result.duplicate is not None,
        }
        if result.dry_run:
            out["would_enrol"] = out.pop("enrolled")
            out["leads"] = [{"id": i, "email": e, "phone": p} for i, e, p in result.sample]
        print_json(out)
        return
    con = stdout()
    if result.duplicate is not None:
        at, count = result.duplicate
        con.print(
            f"event {result.event_id!r} was already received for {campaign} "
            f"({at:%Y-%m-%d %H:%M} UTC, {count:,} enrolled then): enrolled nobody",
            highlight=False,
            markup=False,
        )
        return
    if not result.dry_run:
        con.print(
            f"{campaign}: event {result.event_id!r} enrolled {result.enrolled:,} "
            f"lead{'' if result.enrolled == 1 else 's'}; `campaignctl send` sends their messages",
            highlight=False,
            markup=False,
        )
        return
    con.print(
        f"{campaign}: event {result.event_id!r} would enrol {result.enrolled:,} "
        f"lead{'' if result.enrolled == 1 else 's'} (dry run: nothing written)",
        highlight=False,
        markup=False,
    )
    if result.sample:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("id", "email", "phone"):
            table.add_column(col)
        for i, e, p in result.sample:
            table.add_row(str(i), e or "", p or "")
        con.print(table)
        if result.enrolled > len(result.sample):
            con.print(f"... and {result.enrolled - len(result.sample):,} more", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("trigger")(trigger)

"""`report`: how each campaign did, as a table, csv, json or one self-contained HTML file."""

import io
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from campaignctl.cli.context import PIPE_WIDTH, state

if TYPE_CHECKING:
    from rich.console import Console


class ReportFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    html = "html"


def report(
    ctx: typer.Context,
    campaign: str | None = typer.Argument(
        None, metavar="CAMPAIGN", help="Only this campaign [default: every campaign]."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="DATE",
        help="Only what happened since DATE: YYYY-MM-DD or YYYY-MM-DDTHH:MM in "
        "settings.timezone, or a duration back from now such as 7d.",
    ),
    fmt: ReportFormat = typer.Option(
        ReportFormat.table, "--format", help="table, csv, json or html (one self-contained file)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        metavar="FILE",
        help="Write the report to FILE (atomically) instead of standard output.",
    ),
) -> None:
    """Show how campaigns did, per step and A/B variant: enrolled, sent, delivered,
    undelivered, failed (by reason), replied, opted out, bounced and clicked (when clicks are
    tracked), each rate with its denominator, the A/B decision, and sends and replies per day.

    Rates are per sent message (failed: per attempted, sent + failed) and "-" when there is
    nothing to divide by; a campaign's figures are its steps' summed. Days are in
    settings.timezone. The html format is one file with inline SVG charts that fetches
    nothing; the same data gives the same bytes. Nothing is written to the database.
    """
    from campaignctl.report import build, check_out, parse_since, write_out
    from campaignctl.store import utcnow

    st = state(ctx)
    cfg = st.config()
    if campaign is not None:
        cfg.campaign(campaign)  # "did you mean", before any work
    if out is not None:
        check_out(out)
    after = parse_since(since, cfg.settings.timezone, utcnow()) if since is not None else None
    store = st.store(read_only=True)
    try:
        data = build(cfg, store, campaign, after)
    finally:
        store.close()
    if fmt is ReportFormat.html:
        from campaignctl.report.html import render

        text = render(data)
    elif fmt is ReportFormat.json:
        import json

        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    elif fmt is ReportFormat.csv:
        text = _csv(data)
    else:
        text = ""
        if out is None:
            from campaignctl.cli.context import stdout

            _table(data, stdout())
        else:
            text = _table(data, None)
    if out is None:
        import sys

        sys.stdout.write(text)
    else:
        write_out(out, text)
        typer.echo(f"wrote {out}", err=True)


def _csv(data: dict[str, Any]) -> str:
    import csv

    from campaignctl.report import COUNTS, STEP_RATES

    # one row per campaign, step and variant; the rates in the order the report defines them
    counts = ("enrolled", *COUNTS)
    rate_names = tuple(k for k in STEP_RATES if k != "undelivered_rate")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("campaign", "step", "variant", "channel", *counts, *rate_names, "failed_by_reason"))
    for c in data["campaigns"]:
        rows: list[tuple[str, str, dict[str, Any]]] = [("", "", c)]
        for st in c["steps"]:
            rows.append((st["name"], "", st))
            rows += [(st["name"], v["name"], v) for v in st["variants"]]
        for step, variant, r in rows:
            channel = next((s["channel"] for s in c["steps"] if s["name"] == step), "")
            rates = r["rates"]
            w.writerow(
                (
                    c["name"],
                    step,
                    variant,
                    channel,
                    *("" if r.get(k) is None else r[k] for k in counts),
                    *(
                        "" if rates.get(k, {}).get("value") is None else rates[k]["value"]
                        for k in rate_names
                    ),
                    ";".join(f"{k}={n}" for k, n in r.get("failed_by_reason", {}).items()),
                )
            )
    return buf.getvalue()


def _table(data: dict[str, Any], console: "Console | None") -> str:
    """Print the tables on `console`, or (None) return them as text for --out."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from campaignctl.report import COUNTS, LABELS, RATE_OF
    from campaignctl.report.html import percent

    buf = io.StringIO()
    out = console or Console(file=buf, width=PIPE_WIDTH, force_terminal=False, soft_wrap=True)
    for c in data["campaigns"]:
        rates = c["rates"]
        head = (
            f"{c['name']} ({c['kind']}, {c['status']}): {c['enrolled']:,} enrolled, "
            f"{c['sent']:,} sent, {c['replied']:,} replied "
            f"({percent(rates['reply_rate']['value'])} of sent), {c['opted_out']:,} opted out "
            f"({percent(rates['optout_rate']['value'])}), {c['bounced']:,} bounced "
            f"({percent(rates['bounce_rate']['value'])})"
        )
        if c["clicks_tracked"]:
            head += f", {c['clicked']:,} clicked ({percent(rates['click_rate']['value'])})"
        out.print(escape(head), highlight=False)
        if c["no_sends"]:
            since = f" since {data['since']}" if data["since"] else ""
            out.print(escape(f"  no sends yet{since}: nothing to report"), highlight=False)
            out.print()
            continue
        cols = [k for k in COUNTS if k != "clicked" or c["clicks_tracked"]]
        table = Table(
            caption="rates: failed per attempted (sent + failed), the others per sent; "
            "- when nothing was sent",
            header_style="bold",
        )
        table.add_column("step / variant")
        table.add_column("channel")
        for k in cols:
            table.add_column(LABELS[k], justify="right")
        for st in c["steps"]:
            for i, row in enumerate([st, *st["variants"]]):
                name = st["name"] + (" (removed)" if st["removed"] else "")
                cells = [escape(name) if i == 0 else "  " + escape(row["name"])]
                cells.append(escape(st["channel"]) if i == 0 else "")
                for k in cols:
                    r = RATE_OF.get(k)
                    cell = f"{row[k]:,}"
                    if r:
                        cell += f" ({percent(row['rates'][r]['value'])})"
                    cells.append(cell)
                table.add_row(*cells)
        out.print(table)
        for st in c["steps"]:
            if st["failed_by_reason"]:
                reasons = ", ".join(f"{k} {n:,}" for k, n in st["failed_by_reason"].items())
                out.print(escape(f"  {st['name']} failed: {reasons}"), highlight=False)
            d = st["decision"]
            if d:
                out.print(
                    escape(
                        f"  A/B {st['name']}: winner {d['winner']} by {d['metric']} "
                        f"({d['rule']}): {d['reason']}"
                    ),
                    highlight=False,
                )
        if c["days"]:
            chans = list(c["days"][0]["sends"])
            days = Table(title=f"per day ({data['timezone']})", header_style="bold")
            days.add_column("day")
            for ch in chans:
                days.add_column(f"{ch} sends", justify="right")
            days.add_column("replies", justify="right")
            for d in c["days"]:
                days.add_row(
                    d["day"], *(f"{n:,}" for n in d["sends"].values()), f"{d['replies']:,}"
                )
            out.print(days)
        out.print()
    return buf.getvalue()


def register(app: typer.Typer) -> None:
    app.command()(report)

"""`explain EMAIL_OR_PHONE`: why one lead got what it got, in time order."""

from enum import StrEnum

import typer

from campaignctl.cli.context import print_json, state, stdout


class TextJson(StrEnum):
    text = "text"
    json = "json"


def explain(
    ctx: typer.Context,
    who: str = typer.Argument(
        ..., metavar="EMAIL_OR_PHONE", help="The lead's email, or phone in any usual format."
    ),
    fmt: TextJson = typer.Option(
        TextJson.text, "--format", help="text (one line per decision) or json."
    ),
) -> None:
    """Show every decision about one lead, in time order: imports and changes, each campaign's
    enrolment (or why not), each message's due time and every reason it moved (window, limit,
    backoff), sends with the provider's id, deliveries, replies, opt-outs, skips and failures.

    Times are in settings.timezone. Nothing is written.
    """
    from campaignctl.explain import explain as explain_lead
    from campaignctl.store import utcnow

    st = state(ctx)
    cfg = st.config()
    store = st.store(read_only=True)
    try:
        found = explain_lead(cfg, store, who, utcnow())
    finally:
        store.close()
    if fmt is TextJson.json:
        print_json(found.as_json())
        return
    _print(found, cfg.settings.timezone)


def _print(found: object, timezone: str) -> None:
    from zoneinfo import ZoneInfo

    from rich.markup import escape
    from rich.table import Table

    from campaignctl.explain import Explanation

    assert isinstance(found, Explanation)
    lead = found.lead
    out = stdout()
    who = " · ".join(str(x) for x in (lead["email"], lead["phone"]) if x)
    tags = ", ".join(lead["tags"]) or "none"
    optouts = ", ".join(lead["optouts"]) or "none"
    out.print(
        escape(
            f"{who} · status {lead['status']} · tags {tags} · opted out of: {optouts} "
            f"(times in {timezone})"
        ),
        highlight=False,
    )
    tz = ZoneInfo(timezone)
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for col in ("when", "what", "campaign/step", "why"):
        table.add_column(col, overflow="fold", no_wrap=col != "why")
    for line in found.lines:
        where = "/".join(x for x in (line.campaign, line.step) if x)
        table.add_row(
            f"{line.at.astimezone(tz):%Y-%m-%d %H:%M}",
            line.what,
            escape(where),
            escape(line.text),
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command()(explain)

"""`sync`: replies, opt-outs, bounces and delivery statuses since the last sync."""

import sys
from typing import TYPE_CHECKING, Any

import typer

from campaignctl.cli.context import (
    TableOrJson,
    check_names,
    post_hooks,
    print_json,
    report_error,
    state,
    stdout,
)

if TYPE_CHECKING:
    from campaignctl.hooks import Posted
    from campaignctl.sync import ChannelSync, SyncResult


def sync(
    ctx: typer.Context,
    channel: list[str] = typer.Option(
        [], "--channel", metavar="NAME", help="Only this channel (repeatable)."
    ),
    quiet: bool = typer.Option(
        False,
        "--quiet",
        "-q",
        help="For cron: print nothing when all went well; errors and, when a channel failed, "
        "the summary line go to stderr.",
    ),
    fmt: TableOrJson = typer.Option(TableOrJson.table, "--format", help="table or json."),
) -> None:
    """Read replies, opt-outs, bounces and delivery statuses since the last sync; record them.

    Then post the outgoing hooks' due events, for at most 5 seconds."""
    from campaignctl.clock import wall_clock
    from campaignctl.sync import sync as run_sync

    st = state(ctx)
    check_names(st.config(), channels=channel)
    result = run_sync(st.config(), st.store(), wall_clock(), channels=channel or None)
    code = result.exit_code()
    if fmt is TableOrJson.json:
        posted = post_hooks(st.config(), st.store(), say=False)
        print_json(sync_json(result, posted))
    else:
        if not quiet:
            _render(result)
        post_hooks(st.config(), st.store(), say=not quiet)
        if not quiet:
            print(summary_line(result), flush=True)
        elif code:  # quiet (cron): nothing when all went well, so cron mails only problems
            print(summary_line(result), file=sys.stderr, flush=True)
    for c in result.channels:
        if c.error is not None:
            report_error(c.error.message, c.error.hint)
    if code:
        raise typer.Exit(int(code))


MORE = "more to read: the next sync goes on"


def summary_line(result: "SyncResult") -> str:
    """`sync: sms 2 new (optout 1, reply 1); smtp cannot read replies`."""
    parts = []
    for c in result.channels:
        if not c.reads:
            parts.append(f"{c.channel} cannot read replies")
        elif c.error is not None:
            parts.append(f"{c.channel} error ({c.error.kind.value})")
        else:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(c.events.items()))
            parts.append(
                f"{c.channel} {c.new} new"
                + (f" ({kinds})" if kinds else "")
                + (f", {MORE}" if c.more else "")
            )
    return "sync: " + ("; ".join(parts) or "no channels")


def sync_json(result: "SyncResult", posted: "Posted | None" = None) -> dict[str, Any]:
    """The `sync --format json` document; `hooks` is what was posted after it (null without
    hooks)."""
    hooks = None
    if posted is not None:
        hooks = {
            "delivered": posted.done.delivered,
            "failed": posted.done.failed,
            "errors": list(posted.done.errors or ()),
            "missing_keys": [f"{where}: {why}" for where, why in posted.missing_keys],
        }
    return {"channels": [_channel_json(c) for c in result.channels], "hooks": hooks}


def _channel_json(c: "ChannelSync") -> dict[str, Any]:
    return {
        "channel": c.channel,
        "provider": c.provider,
        "reads_replies": c.reads,
        "note": c.note,
        "events": dict(c.events),
        "new": c.new,
        "duplicates": c.duplicates,
        "unknown_leads": c.unknown_leads,
        "stopped": c.stopped,
        "skipped": c.skipped,
        "more": c.more,
        "error": None
        if c.error is None
        else {"kind": c.error.kind.value, "message": c.error.message, "hint": c.error.hint},
    }


def _render(result: "SyncResult") -> None:
    from rich.table import Table

    con = stdout()
    for c in result.channels:
        if not c.reads:
            con.print(f"{c.channel} ({c.provider}): {c.note}")
            continue
        if c.error is not None:
            con.print(f"{c.channel} ({c.provider}): not synced ({c.error.kind.value} error)")
            continue
        t = Table(
            title=f"{c.channel} ({c.provider}): {c.new} new; {c.stopped} sequence(s) stopped, "
            f"{c.skipped} pending message(s) skipped" + (f"; {MORE}" if c.more else "")
        )
        t.add_column("event")
        t.add_column("new", justify="right")
        for kind, n in sorted(c.events.items()):
            t.add_row(kind, str(n))
        if c.duplicates:
            t.add_row("(seen before)", str(c.duplicates))
        if c.unknown_leads:
            t.add_row("(no matching lead)", str(c.unknown_leads))
        con.print(t)


def register(app: typer.Typer) -> None:
    app.command()(sync)

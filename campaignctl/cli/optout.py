"""`leads optout`: opt a lead out by hand, with the same effects as an inbound STOP."""

import typer

from campaignctl.cli.context import state


def optout(
    ctx: typer.Context,
    who: str = typer.Argument(
        ..., metavar="EMAIL_OR_PHONE", help="The lead's email, or phone in any usual format."
    ),
    channel: str | None = typer.Option(
        None,
        "--channel",
        metavar="CHANNEL",
        help="Opt out of this channel only (default: every channel).",
    ),
) -> None:
    """Opt a lead out: stop its messages on a channel (or all) and end sequences that stop on it."""
    from campaignctl.store import utcnow
    from campaignctl.suppression import check_opt_out, opt_out_by_hand

    st = state(ctx)
    cfg = st.config()
    reader = st.store(read_only=True)
    try:  # an unknown lead or channel is refused before any database file is created
        check_opt_out(reader, cfg, who, channel)
    finally:
        reader.close()
    done = opt_out_by_hand(st.store(), cfg, who, channel, utcnow())
    where = "every channel" if done.channel == "*" else f"channel {done.channel}"
    if done.already:
        typer.echo(f"{done.lead} was already opted out of {where}; nothing changed.")
        return
    typer.echo(
        f"{done.lead} opted out of {where}: {done.stopped} sequence(s) stopped, "
        f"{done.skipped} pending message(s) skipped."
    )


def register(leads_app: typer.Typer) -> None:
    leads_app.command()(optout)

"""`leads delete`: erase a person (GDPR), keeping counts and suppressing their addresses."""

import sys

import typer

from campaignctl.cli.context import state


def delete(
    ctx: typer.Context,
    who: str = typer.Argument(
        ..., metavar="EMAIL_OR_PHONE", help="The lead's email, or phone in any usual format."
    ),
    yes: bool = typer.Option(
        False, "--yes", help="Erase without asking (required when not on a terminal)."
    ),
) -> None:
    """Erase a lead: fields, attributes, tags and message content go; counts stay; the
    addresses stay on the suppression list as keyed hashes, so they are never messaged again."""
    from campaignctl.erasure import check, erase
    from campaignctl.errors import UsageError
    from campaignctl.store import utcnow

    st = state(ctx)
    cfg = st.config()
    reader = st.store(read_only=True)
    try:  # an unknown lead is refused before anything is asked or written
        name = check(reader, cfg, who)
    finally:
        reader.close()
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"leads delete {who}: erasing cannot be undone; confirm it",
                f"pass --yes: campaignctl leads delete {who} --yes",
            )
        typer.confirm(f"Erase {name}? Their fields and message content go for good", abort=True)
    done = erase(st.store(), cfg, who, utcnow())
    typer.echo(
        f"{name} erased: {done.addresses} address(es) suppressed on every channel, "
        f"content of {done.messages} message(s) cleared, {done.skipped} pending message(s) "
        f"skipped, {done.stopped} sequence(s) stopped."
    )


def register(leads_app: typer.Typer) -> None:
    leads_app.command()(delete)

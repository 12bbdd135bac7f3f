"""`leads set` and `leads tag`: change stored leads by hand."""

import typer

from campaignctl.cli.context import state, stderr


def set_(
    ctx: typer.Context,
    who: str = typer.Argument(
        ..., metavar="EMAIL_OR_PHONE", help="The lead's email, or phone in any usual format."
    ),
    assignments: list[str] = typer.Argument(
        ...,
        metavar="KEY=VALUE...",
        help="status=S, first_name=X, last_name=X, timezone=ZONE, email=X, phone=X, tags=a,b, "
        "tags+=T, tags-=T, or any attribute (budget_max=3500000). An empty value clears a "
        "field (city= removes the attribute).",
    ),
) -> None:
    """Change one lead: status, names, time zone, email, phone, tags or attributes.

    Each status change and tag added or removed is recorded as an event campaigns can enrol on.
    An empty value clears a field or removes an attribute. One transaction: all or nothing.
    """
    from campaignctl.leads.edit import check_set, parse_assignments, set_lead
    from campaignctl.store import utcnow

    st = state(ctx)
    cfg = st.config()
    parsed = parse_assignments(assignments)
    region = cfg.settings.default_region
    reader = st.store(read_only=True)
    try:  # an unknown lead is refused before any database file is created
        check_set(reader, who, region)
    finally:
        reader.close()
    change = set_lead(st.store(), who, parsed, default_region=region, now=utcnow())
    if not change.changed:
        typer.echo(f"{change.lead}: nothing changed.")
        return
    parts = []
    if change.status is not None:
        parts.append(f"status {change.status[0]} -> {change.status[1]}")
    parts += [f"tag +{t}" for t in change.added] + [f"tag -{t}" for t in change.removed]
    if change.fields:
        parts.append("changed " + ", ".join(change.fields))
    typer.echo(f"{change.lead}: " + "; ".join(parts) + ".")


def tag(
    ctx: typer.Context,
    tag_name: str = typer.Argument(..., metavar="TAG", help="The tag (stored in lower case)."),
    where: str = typer.Option(
        ...,
        "--where",
        metavar="EXPR",
        help="The leads to change: an audience expression, as in `leads list --where` "
        '("true" for every lead).',
    ),
    remove: bool = typer.Option(False, "--remove", help="Remove the tag instead of adding it."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count the leads that would change; write nothing."
    ),
) -> None:
    """Tag (or untag) every lead matching an expression; prints how many changed.

    Tags compare case-insensitively. Each tag added or removed is recorded as an event
    campaigns can enrol on. One transaction: all or nothing.
    """
    from campaignctl.leads.edit import normalise_tag, tag_leads
    from campaignctl.store import utcnow

    st = state(ctx)
    normalise_tag(tag_name)  # a bad tag is refused before any database file is created
    store = st.store(read_only=dry_run)
    result = tag_leads(store, tag_name, where, remove=remove, dry_run=dry_run, now=utcnow())
    verb = (
        ("would remove" if dry_run else "removed")
        if remove
        else ("would add" if dry_run else "added")
    )
    typer.echo(
        f"{verb} tag {result.tag!r} on {result.changed:,} lead(s) "
        f"({result.matched:,} matched; {result.matched - result.changed:,} unchanged)."
    )
    if note := result.skipped.note():
        stderr().print(f"warning: {note}", markup=False, highlight=False)


def register(leads_app: typer.Typer) -> None:
    leads_app.command("set")(set_)
    leads_app.command("tag")(tag)

"""`preview`: show one step for one lead exactly as it would be sent."""

from typing import TYPE_CHECKING

import typer

from campaignctl.cli.context import state

if TYPE_CHECKING:
    from campaignctl.preview import Preview

_STRUCTURE = ("Content-Type", "Content-Transfer-Encoding", "MIME-Version")


def preview(
    ctx: typer.Context,
    campaign: str = typer.Argument(..., help="Campaign name, as in [campaigns.NAME]."),
    step: str | None = typer.Option(
        None, "--step", help="Step name or number (1 is the first) [default: the first step]."
    ),
    lead: str | None = typer.Option(
        None,
        "--lead",
        metavar="EMAIL_OR_PHONE",
        help="The lead to render for [default: the first lead in the campaign's audience].",
    ),
    variant: str | None = typer.Option(
        None,
        "--variant",
        metavar="NAME",
        help="Render this variant of the step, drafts included [default: the one the lead "
        "is assigned; never a draft].",
    ),
) -> None:
    """Show a step rendered for one lead: email headers and text, or SMS body and segments."""
    from datetime import UTC, datetime

    from campaignctl.preview import build_preview

    p = build_preview(
        state(ctx).config(), campaign, step, lead, now=datetime.now(UTC), variant=variant
    )
    echo = typer.echo
    echo(
        f"# {p.campaign} / {p.step.name}: step {p.index + 1} of {p.steps}, "
        f"{p.kind} via channel {p.step.channel!r}"
        + (f", variant {p.rendered.variant!r}" if p.rendered.variant else "")
        + (" (a draft: never sent until approved)" if p.is_draft else "")
    )
    echo(f"# lead: {p.to.removeprefix('whatsapp:')} ({p.lead_source})")
    if p.email is not None:
        for name, value in p.email.items():
            if name not in _STRUCTURE:
                echo(f"{name}: {value}")
        text = p.email.get_body(preferencelist=("plain",))
        html = p.email.get_body(preferencelist=("html",))
        echo("")
        echo(text.get_content().rstrip("\n") if text is not None else "")
        echo("")
        if html is not None:
            size = len(html.get_content().encode())
            echo(f"# multipart/alternative: this text part, and an HTML part of {size} bytes")
        _attachments(p)
        echo("# Message-ID (and In-Reply-To) are placeholders: real ones are made at send time")
        return
    echo(f"To: {p.to}")
    if p.sender:
        echo(f"From: {p.sender}")
    if p.rendered.content_sid:
        echo(f"Content-SID: {p.rendered.content_sid}")
        for k, v in p.rendered.content_variables.items():
            echo(f"Content-Variable {k}: {v}")
    echo("")
    echo(p.rendered.text)
    echo("")
    if p.sms is not None:
        echo(f"# {p.sms.describe()}")


def _attachments(p: "Preview") -> None:
    """One line per attached file with its size, and the total against the channel's limit."""
    from campaignctl.attachments import (
        DEFAULT_MAX_MESSAGE_SIZE,
        estimated_message_size,
        human_size,
    )

    files = p.rendered.attachments
    for a in files:
        main, sub = a.content_type
        typer.echo(f"# attachment: {a.name} ({human_size(a.size)}, {main}/{sub})")
    if files:
        total = estimated_message_size(files, p.rendered.text, p.rendered.html)
        limit = p.max_size or DEFAULT_MAX_MESSAGE_SIZE
        over = f", OVER the channel's limit of {human_size(limit)}" if total > limit else ""
        typer.echo(f"# multipart/mixed: about {human_size(total)} after base64{over}")


def register(app: typer.Typer) -> None:
    app.command()(preview)
